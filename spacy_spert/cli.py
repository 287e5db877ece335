"""The ``spert`` command-line interface, on spaCy's own tooling (typer, wasabi).

Run it as ``python -m spacy_spert COMMAND`` or, through the ``spacy_cli``
entry point, as ``python -m spacy spert COMMAND``. ``--help`` after a command
shows its arguments.

Commands (each line is the first sentence of the command's help):
    convert          Convert a SpERT JSON file to a .spacy file.
    convert-dataset  Convert every SpERT JSON file of a folder.
    evaluate         Score a pipeline; print SpERT's table.
    benchmark        Train, score and time; write a results file.
    kfold            k-fold cross-validation of a config.
    seeds            Benchmark several seeds; mean and std.
    speed            Speed and memory against the transformer.
    ablation-table   The SpERT.MT ablation table.
    demo             Tag sentences and print what was found.
    demo-data        Write the offline demo corpus.
    predict          Tag a corpus; write JSONL or .spacy.
    throughput       Docs/s of predict against nlp.pipe.
    import           Import Prodigy, brat or Label Studio data.
    render           Draw entities and relations as HTML.
    serve            Serve a web page and a JSON API.
    ray-throughput   Docs/s of predict --engine ray.

To add a command (``predict``, ``render``, ``serve``, ...): write one function
decorated with ``@app.command("name")`` whose parameters are typer ``Arg`` and
``Opt`` and whose docstring is its help (a first sentence of at most 45
characters, listed above); let it call one library function inside ``with
_user_errors():``; report progress with wasabi's ``msg`` and print tables and
data lines with ``typer.echo`` (``msg`` wraps text at 80 columns). The logic
lives in the library (:mod:`spacy_spert.experiments` for the project's
tools), not here.

Errors in the input (invalid data, a missing file, a failed run) end a command
with one line ``error: ...`` on stderr and exit status 1; nothing is written
for invalid data. Usage errors exit with status 2.
"""
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, NoReturn, Optional

import click
import typer
from spacy.cli._util import Arg, Opt
from spacy.cli._util import app as spacy_app
from spacy.cli._util import parse_config_overrides
from wasabi import msg

NAME = "spert"
PROG = "python -m spacy_spert"
HELP = """SpERT joint entity and relation extraction.

Convert data, evaluate, benchmark and demo spaCy pipelines with a `spert`
component (SpERT and SpERT.MT).
"""
# Commands that take config overrides (--section.key value) after their options.
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(name=NAME, help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def fail(message: str, status: int = 1) -> NoReturn:
    """Print ``error: MESSAGE`` as one line to stderr and exit with ``status``."""
    typer.echo(f"error: {' '.join(str(message).splitlines())}", err=True)
    raise typer.Exit(status)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors of bad input into :func:`fail`: ValueError (e.g. a
    ConversionError), OSError (``FILE: what``) and a failed subprocess."""
    try:
        yield
    except ValueError as e:
        fail(str(e))
    except OSError as e:
        what = e.strerror or str(e)
        fail(f"{e.filename}: {what}" if e.filename is not None else what)
    except subprocess.CalledProcessError as e:
        fail(f"exit status {e.returncode} from: {' '.join(map(str, e.cmd))}")


def _ints(text: str) -> List[int]:
    """``"1,8,64"`` -> [1, 8, 64] (``""`` -> [])."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"expected comma-separated integers, got {text!r}")


def _overrides(ctx: typer.Context) -> List[str]:
    """The extra arguments of a command, checked as spaCy checks config overrides."""
    try:
        parse_config_overrides(list(ctx.args))
    except click.ClickException as e:  # e.g. NoSuchOption for "--name" without a section
        fail(e.format_message(), status=2)
    return list(ctx.args)


@app.command("convert")
def convert_cli(
    # fmt: off
    input_path: Path = Arg(..., help="SpERT JSON file to read", show_default=False),
    output_path: Path = Arg(..., help=".spacy file to write", show_default=False),
    types: Optional[Path] = Opt(None, "--types", metavar="TYPES.json", help="SpERT types file; entity/relation types not in it are errors"),
    spans_key: str = Opt("sc", "--spans-key", help="Span group for the entities"),
    lang: str = Opt("en", "--lang", help="Language code for the vocab"),
    # fmt: on
):
    """Convert a SpERT JSON file to a .spacy file.

    The JSON file is a list of {tokens, entities, relations} records; the
    .spacy file a DocBin with the entities in doc.spans[SPANS_KEY], relations in
    doc._.relations, gold tokenization kept. Nothing is written if any record
    is invalid.
    """
    from .convert import convert_file

    with _user_errors():
        n_docs = convert_file(input_path, output_path, types_path=types, spans_key=spans_key, lang=lang)
    typer.echo(f"Converted {n_docs} docs from {input_path} to {output_path}")


@app.command("convert-dataset")
def convert_dataset_cli(
    # fmt: off
    input_dir: Path = Arg(..., help="Folder with the SpERT JSON files", show_default=False),
    output_dir: Path = Arg(..., help="Folder for the .spacy files", show_default=False),
    dataset: Optional[str] = Opt(None, "--dataset", help="Dataset name (default: the input folder's name)"),
    types: Optional[Path] = Opt(None, "--types", help="Types file (default: <dataset>_types.json or types.json)"),
    # fmt: on
):
    """Convert every SpERT JSON file of a folder.

    Each file but the types file becomes OUTPUT_DIR/<split>.spacy, where <split> is the file name without the dataset prefix
    (conll04_train_dev.json -> train_dev.spacy). Every file is checked against
    the types file.
    """
    from .experiments.datasets import convert_dataset

    with _user_errors():
        for path, output, n_docs in convert_dataset(input_dir, output_dir, dataset, types):
            typer.echo(f"{path} -> {output} ({n_docs} docs)")


@app.command("evaluate")
def evaluate_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline directory or package name", show_default=False),
    data_path: Path = Arg(..., help=".spacy file (or folder) with gold annotation", show_default=False),
    output: Optional[Path] = Opt(None, "--output", "-o", help="JSON file for all scores", dir_okay=False),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    # fmt: on
):
    """Score a pipeline; print SpERT's table.

    Runs spaCy's evaluate (same JSON as `spacy evaluate`) and prints SpERT's NER and relation P/R/F1, micro and macro, relations in
    strict and boundaries mode: percentages in the table, fractions in the JSON.
    """
    from .experiments.evaluation import evaluate, score_table

    with _user_errors():
        scores = evaluate(model, data_path, output, gpu_id)
    msg.divider(f"{model} on {data_path}")
    typer.echo(score_table(scores))
    if output is not None:
        msg.good(f"Saved all scores to {output}")


@app.command("benchmark", context_settings=OVERRIDES)
def benchmark_cli(
    # fmt: off
    ctx: typer.Context,
    config: Path = Arg(..., help="Training config", show_default=False),
    train: Path = Opt(..., "--train", help="Training corpus (.spacy)", show_default=False),
    test: Path = Opt(..., "--test", help="Test corpus (.spacy): logged during training, scored after", show_default=False),
    output_dir: Path = Opt(..., "--output-dir", help="Training output; its model-last is scored", show_default=False),
    results: Path = Opt(..., "--results", help="Results JSON file (the tables go to the .md next to it)", show_default=False),
    epochs: int = Opt(20, "--epochs", help="Training epochs"),
    seed: int = Opt(0, "--seed", help="Random seed (system.seed)"),
    gpu_id: int = Opt(-1, "--gpu-id", help="GPU id, -1 for CPU"),
    batch_sizes: str = Opt("1,8,64", "--batch-sizes", help="Inference batch sizes to time"),
    skip_train: bool = Opt(False, "--skip-train", help="Reuse the model in --output-dir"),
    skip_speed: bool = Opt(False, "--skip-speed", help="Do not time inference"),
    # fmt: on
):
    """Train, score and time; write a results file.

    Trains CONFIG with the paper protocol (`spacy train` on --train for
    --epochs epochs, --test only logged), score model-last on --test, time
    inference against the transformer alone; write --results (JSON) and its
    tables (.md) with the command, versions, seed and machine. Further
    --section.key value arguments are config overrides for training, recorded
    in the results.
    """
    from .experiments.benchmark import markdown, run_benchmark

    overrides = _overrides(ctx)
    sizes = [] if skip_speed else _ints(batch_sizes)
    with _user_errors():
        out = run_benchmark(config, train, test, output_dir, results, epochs=epochs, seed=seed, gpu_id=gpu_id,
                            batch_sizes=sizes, skip_train=skip_train, overrides=overrides)
    typer.echo(markdown(out))


@app.command("kfold", context_settings=OVERRIDES)
def kfold_cli(
    # fmt: off
    ctx: typer.Context,
    config_path: Path = Arg(..., help="Training config", show_default=False),
    corpus_dir: Path = Arg(..., help="Folder with the folds' .spacy files", show_default=False),
    output: Path = Opt(..., "--output", "-o", help="Folder for the fold models", show_default=False),
    metrics: Path = Opt(..., "--metrics", "-m", help="JSON file for the aggregated scores", show_default=False),
    train_pattern: str = Opt("split_{fold}_train.spacy", "--train-pattern", help="Train file name with {fold}"),
    test_pattern: str = Opt("split_{fold}_test.spacy", "--test-pattern", help="Test file name with {fold}"),
    folds: str = Opt("all", "--folds", help="'all' or comma-separated fold ids"),
    model: str = Opt("last", "--model", help="Model to evaluate: last or best"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    resume: bool = Opt(False, "--resume", help="Skip folds that have a metrics.json"),
    # fmt: on
):
    """k-fold cross-validation of a config.

    For every fold in CORPUS_DIR: `spacy train` on
    its train file (its test file only logged) and evaluate model-last on its
    test file, each in a fresh process; then write the mean and sample standard
    deviation of every score to --metrics. Further --section.key value
    arguments are config overrides for training.
    """
    from .experiments.evaluation import score_table
    from .experiments.kfold import run_kfold, summary

    overrides = _overrides(ctx)
    with _user_errors():
        result = run_kfold(config_path, corpus_dir, output, metrics, train_pattern=train_pattern,
                           test_pattern=test_pattern, folds=folds, model=model, gpu_id=gpu_id, resume=resume,
                           overrides=overrides)
    msg.divider(f"Mean over {result['n_folds']} folds (sample standard deviation)")
    typer.echo(score_table({key: value for key, value in result["mean"].items() if "." not in key}))
    typer.echo("\n".join(summary(result)))
    msg.good(f"Saved {metrics}")


@app.command("seeds", context_settings=OVERRIDES)
def seeds_cli(
    # fmt: off
    ctx: typer.Context,
    config: Path = Arg(..., help="Training config", show_default=False),
    train: Path = Opt(..., "--train", help="Training corpus (.spacy)", show_default=False),
    test: Path = Opt(..., "--test", help="Test corpus (.spacy): logged during training, scored after", show_default=False),
    output_dir: Path = Opt(..., "--output-dir", help="Folder for the runs (seed<N>/ and seed<N>.log)", show_default=False),
    prefix: Path = Opt(..., "--results-prefix", help="Results: PREFIX-seed<N>.json per seed, PREFIX-seeds.json summary", show_default=False),
    seeds: str = Opt("0,1,2", "--seeds", help="Comma-separated seeds"),
    epochs: int = Opt(20, "--epochs", help="Training epochs"),
    gpu_id: int = Opt(-1, "--gpu-id", help="GPU id, -1 for CPU"),
    jobs: int = Opt(1, "--jobs", "-j", help="Seeds run at once"),
    batch_sizes: str = Opt("1,8,64", "--batch-sizes", help="Inference batch sizes each run times"),
    skip_speed: bool = Opt(False, "--skip-speed", help="Do not time inference"),
    resume: bool = Opt(False, "--resume", help="Reuse per-seed results made with the same settings"),
    # fmt: on
):
    """Benchmark several seeds; mean and std.

    Runs `benchmark` (the paper protocol) once per seed, each in a fresh
    process, writing PREFIX-seed<N>.json, then the mean and sample standard
    deviation of every headline score to PREFIX-seeds.json and .md. Further
    --section.key value arguments are config overrides for training.
    """
    from .experiments.seeds import markdown, run_seeds, summary_path

    overrides = _overrides(ctx)
    sizes = [] if skip_speed else _ints(batch_sizes)
    with _user_errors():
        summary = run_seeds(config, train, test, output_dir, prefix, seeds=_ints(seeds), epochs=epochs, gpu_id=gpu_id,
                            jobs=jobs, batch_sizes=sizes, resume=resume, overrides=overrides)
    typer.echo(markdown(summary))
    msg.good(f"Saved {summary_path(prefix)}")


@app.command("speed")
def speed_cli(
    # fmt: off
    model: Path = Arg(..., help="Trained pipeline (e.g. the model-last of `benchmark`)", show_default=False),
    test: Path = Opt(..., "--test", help="Corpus whose texts are tagged", show_default=False),
    train: Optional[Path] = Opt(None, "--train", help="Training corpus for the training step split"),
    results: Path = Opt(..., "--results", help="Results JSON file (the tables go to the .md next to it)", show_default=False),
    batch_sizes: str = Opt("1,8,64", "--batch-sizes", help="Inference batch sizes"),
    repeats: int = Opt(5, "--repeats", help="Alternating inference runs per batch size"),
    train_steps: int = Opt(0, "--train-steps", help="Training steps to time; 0: one epoch; <0: none"),
    lengths: str = Opt("100,300,1000,3000,10000,20000", "--lengths", help="Document lengths in tokens; '' for none"),
    repeats_long: int = Opt(2, "--repeats-long", help="Timed runs per length"),
    plot: Optional[Path] = Opt(None, "--plot", help="PNG of time and memory against length (needs matplotlib: the bench extra)"),
    gpu_id: int = Opt(-1, "--gpu-id", help="GPU id, -1 for CPU"),
    seed: int = Opt(0, "--seed", help="Random seed"),
    doc_windows: bool = Opt(False, "--doc-windows", help="Keep the model's own span getter"),
    # fmt: on
):
    """Speed and memory against the transformer.

    Measures a trained pipeline against its transformer alone: inference by batch size, the training step split, and time and peak memory
    against document length; writes --results (JSON), its tables (.md) and
    the --plot.
    """
    from .experiments.speed import markdown, run_speed

    if plot is not None and lengths.strip():
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            fail("--plot needs matplotlib: pip install 'spacy-spert[bench]'")
    with _user_errors():
        out = run_speed(model, test, results, train=train, batch_sizes=_ints(batch_sizes), repeats=repeats,
                        train_steps=train_steps, length_values=_ints(lengths), repeats_long=repeats_long,
                        plot_path=plot, gpu_id=gpu_id, seed=seed, doc_windows=doc_windows)
    typer.echo(markdown(out))


@app.command("ablation-table")
def ablation_table_cli(
    # fmt: off
    spert: Path = Opt(..., "--spert", help="SpERT results file (from `benchmark`)", show_default=False),
    mt_prefix: str = Opt(..., "--mt-prefix", help="SpERT.MT results files up to -seed<SEED>.json", show_default=False),
    seed: int = Opt(0, "--seed", help="Seed in the results file names"),
    output: Path = Opt(..., "--output", help="Markdown file for the table", show_default=False),
    # fmt: on
):
    """The SpERT.MT ablation table.

    Collects the results of `benchmark` runs (SpERT, SpERT.MT and SpERT.MT
    without its multitask heads, IoU loss or entity logits) into one Markdown
    table of F1 with the difference to SpERT.MT. Missing results files are rows
    of dashes.
    """
    from .experiments.ablation import ablation_table

    with _user_errors():
        text = ablation_table(spert, mt_prefix, seed)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf8")
    typer.echo(text)


@app.command("demo")
def demo_cli(
    # fmt: off
    model: str = Arg("training/demo/model-last", help="Pipeline directory or package name"),
    text: Optional[List[str]] = Opt(None, "--text", help="A sentence to tag (repeatable; default: held-out demo sentences)"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's)"),
    # fmt: on
):
    """Tag sentences and print what was found.

    Prints the entities and relations a trained pipeline finds. The default sentences use names, organisations and
    places that the demo training data does not have.
    """
    import spacy

    from .experiments.demo import demo

    with _user_errors():
        nlp = spacy.load(model)
    msg.info(f"Pipeline {model}: {nlp.pipe_names}")
    typer.echo("\n".join(demo(nlp, text, spans_key)))


@app.command("demo-data")
def demo_data_cli(
    # fmt: off
    output: Path = Opt(Path("assets/demo"), "--output", help="Output folder"),
    n_train: int = Opt(500, "--n-train", help="Training sentences"),
    n_dev: int = Opt(100, "--n-dev", help="Dev sentences"),
    seed: int = Opt(13, "--seed", help="Random seed"),
    # fmt: on
):
    """Write the offline demo corpus.

    Writes train.json, dev.json and types.json in SpERT's format: template sentences with CoNLL04's types. Deterministic for
    a seed; assets/demo holds the committed output.
    """
    from .experiments.demo_data import write_demo_data

    with _user_errors():
        n = write_demo_data(output, n_train, n_dev, seed)
    msg.good(
        f"Wrote {n['train']} train ({n['entities']} entities, {n['relations']} relations) "
        f"and {n['dev']} dev sentences to {output}"
    )


@app.command("predict")
def predict_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline directory or package name", show_default=False),
    input_path: str = Arg(..., help="Input: .jsonl, .spacy, a text file or a folder of .txt files (Ray: .jsonl or .parquet files, a folder of them, any path Ray can read)", show_default=False),
    output_path: Path = Arg(..., help="Output: .jsonl or .spacy (see --format)", show_default=False),
    output_format: Optional[str] = Opt(None, "--format", help="jsonl or spacy (default: spacy for a .spacy OUTPUT, else jsonl)"),
    batch_size: int = Opt(64, "--batch-size", "-b", help="Docs per nlp.pipe batch"),
    buffer_size: int = Opt(2048, "--buffer-size", help="Docs sorted by length together (1: no sorting)"),
    n_process: int = Opt(1, "--n-process", "-n", help="Processes for nlp.pipe"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    text_key: str = Opt("text", "--text-key", help="JSONL field with the text (also the output's)"),
    lines: bool = Opt(False, "--lines", help="Text input: one doc per line, not per file"),
    skip_invalid: bool = Opt(False, "--skip-invalid", help="Leave out invalid lines, list them and go on"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's)"),
    engine: str = Opt("local", "--engine", help="local (this machine) or ray (a Ray cluster: pip install 'spacy-spert[ray]')"),
    address: Optional[str] = Opt(None, "--address", help="Ray: the cluster (auto: the one this machine is in; default: RAY_ADDRESS, else a new local one)"),
    num_actors: int = Opt(2, "--num-actors", help="Ray: actors, each with its own copy of the model"),
    cpus_per_actor: float = Opt(1.0, "--cpus-per-actor", help="Ray: CPUs (and torch threads) per actor"),
    gpus_per_actor: float = Opt(0.0, "--gpus-per-actor", help="Ray: GPUs per actor (0.5: two actors share one)"),
    id_key: Optional[str] = Opt(None, "--id-key", help="Ray: a field every doc has, unique (checked)"),
    quantize: bool = Opt(False, "--quantize", help="CPU only: int8 dynamic quantization of the encoder's linear layers (faster, see README)"),
    # fmt: on
):
    """Tag a corpus; write JSONL or .spacy.

    Runs MODEL over every doc of INPUT and writes one output doc per input
    doc, in input order. INPUT is a .jsonl file ({"text": ...} per line, the
    other fields carried through), a .spacy file, a folder (each .txt file
    below it one doc) or a text file (one doc, or one per line with --lines).
    A JSONL OUTPUT line holds the input's fields, the text, "entities"
    (character and token offsets, label, score, text) and "relations" (head
    and tail as indices into the entities, label, score); a .spacy OUTPUT is
    a DocBin with user data. Docs are run in batches of similar length and
    written in input order. An invalid line stops the run (error naming file
    and line, no output) unless --skip-invalid; OUTPUT appears only when
    complete. With --engine ray the docs are tagged by a pool of actors on a
    Ray cluster (Ray Data reads .jsonl or .parquet input) and the driver
    writes the same JSONL lines (or .parquet), in input order, each doc
    exactly once.
    """
    from .predict import predict

    if engine == "ray":
        return _predict_ray_cli(model, input_path, output_path, output_format=output_format, batch_size=batch_size,
                                text_key=text_key, skip_invalid=skip_invalid, spans_key=spans_key, address=address,
                                num_actors=num_actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                                id_key=id_key, local_only={"--buffer-size": buffer_size != 2048,
                                                           "--n-process": n_process != 1, "--gpu-id": gpu_id != -1,
                                                           "--lines": lines, "--quantize": quantize})
    if engine != "local":
        fail(f"unknown --engine {engine!r} (choose local or ray)", status=2)
    ray_only = {"--address": address is not None, "--num-actors": num_actors != 2, "--cpus-per-actor": cpus_per_actor != 1,
                "--gpus-per-actor": gpus_per_actor != 0, "--id-key": id_key is not None}
    if any(ray_only.values()):
        fail(f"{', '.join(k for k, v in ray_only.items() if v)}: only with --engine ray", status=2)
    with _user_errors():
        report = predict(model, input_path, output_path, output_format=output_format, batch_size=batch_size,
                         buffer_size=buffer_size, n_process=n_process, gpu_id=gpu_id, text_key=text_key,
                         lines=lines, skip_invalid=skip_invalid, spans_key=spans_key, quantize=quantize)
    msg.good(f"Wrote {report.n_docs} docs ({report.n_entities} entities, {report.n_relations} relations) "
             f"to {output_path} in {report.seconds:.1f} s ({report.docs_per_second:.1f} docs/s)")
    if report.skipped:
        msg.warn(f"Skipped {len(report.skipped)} invalid lines or files:")
        for skipped in report.skipped:
            typer.echo(f"  {skipped}")


def _predict_ray_cli(model: str, input_path: str, output_path: Path, *, local_only: Dict[str, bool], **kwargs) -> None:
    """`predict --engine ray`: check the options, run predict_ray, report."""
    from .distributed import predict_ray

    if any(local_only.values()):
        fail(f"{', '.join(k for k, v in local_only.items() if v)}: not with --engine ray", status=2)
    options = dict(output_format=kwargs["output_format"], batch_size=kwargs["batch_size"],
                   text_key=kwargs["text_key"], skip_invalid=kwargs["skip_invalid"], spans_key=kwargs["spans_key"],
                   address=kwargs["address"], num_actors=kwargs["num_actors"],
                   num_cpus_per_actor=kwargs["cpus_per_actor"], num_gpus_per_actor=kwargs["gpus_per_actor"],
                   id_key=kwargs["id_key"])
    with _user_errors():
        try:
            report = predict_ray(model, input_path, output_path, **options)
        except ImportError as e:
            fail(str(e))
    msg.good(f"Wrote {report.n_docs} docs ({report.n_entities} entities, {report.n_relations} relations) "
             f"to {output_path} in {report.seconds:.1f} s ({report.docs_per_second:.1f} docs/s) with "
             f"{report.n_actors} Ray actors")
    if report.duplicates:
        msg.info(f"Dropped {report.duplicates} docs that came back twice (retried after a failure)")
    if report.skipped:
        msg.warn(f"Skipped {len(report.skipped)} invalid lines or files:")
        for skipped in report.skipped:
            typer.echo(f"  {skipped}")


@app.command("throughput")
def throughput_cli(
    # fmt: off
    model: Path = Arg(..., help="Trained pipeline", show_default=False),
    corpus: Path = Arg(..., help=".spacy file whose texts are tagged", show_default=False),
    results: Path = Opt(..., "--results", help="Results JSON file (the tables go to the .md next to it)", show_default=False),
    n_docs: int = Opt(5000, "--n-docs", help="Docs per run: the corpus's texts repeated and shuffled"),
    seed: int = Opt(0, "--seed", help="Seed of the shuffle"),
    batch_sizes: str = Opt("1,8,16,32,64,128", "--batch-sizes", help="Batch sizes of plain nlp.pipe"),
    batch_size: int = Opt(64, "--batch-size", help="Batch size of predict"),
    buffer_size: int = Opt(2048, "--buffer-size", help="Buffer size of predict"),
    repeats: int = Opt(3, "--repeats", help="Alternating rounds; docs/s from the median"),
    gpu_id: int = Opt(-1, "--gpu-id", help="GPU id, -1 for CPU"),
    # fmt: on
):
    """Docs/s of predict against nlp.pipe.

    Times plain nlp.pipe at each of --batch-sizes and `predict` (JSONL in,
    JSONL out, length-sorted batches) in alternating rounds in one process,
    checks that both give the same entities and relations, and writes
    --results (JSON) and its tables (.md) with the command, versions, seed
    and machine. Exits with status 1 if the outputs differ.
    """
    from .experiments.throughput import markdown, run_throughput

    with _user_errors():
        out = run_throughput(model, corpus, results, n_docs=n_docs, seed=seed, batch_sizes=_ints(batch_sizes),
                             batch_size=batch_size, buffer_size=buffer_size, repeats=repeats, gpu_id=gpu_id)
    typer.echo(markdown(out))
    if not out["output"]["same_output"]:
        fail(f"predict and nlp.pipe gave different output; see {results}")
# Importing annotations from annotation tools --------------------------------


@app.command("import")
def import_cli(
    # fmt: off
    fmt: str = Arg(..., metavar="FORMAT", help="The annotation tool: prodigy, brat or label-studio", show_default=False),
    input_path: Path = Arg(..., help="Prodigy JSONL (db-out), brat folder of .txt + .ann, or Label Studio JSON export", show_default=False),
    output_path: Path = Arg(..., help=".spacy file to write", show_default=False),
    lang: Optional[str] = Opt(None, "--lang", help="Language of the blank tokenizer  [default: en]", show_default=False),
    model: Optional[str] = Opt(None, "--model", help="Pipeline (name or path) whose tokenizer and sentence splitter to use instead of --lang"),
    spans_key: str = Opt("sc", "--spans-key", help="Span group for the entities"),
    split_sentences: bool = Opt(False, "--split-sentences", help="One doc per sentence (relations across sentences are left out)"),
    strict: bool = Opt(False, "--strict", help="Fail on entities not on token boundaries instead of expanding them"),
    types: Optional[Path] = Opt(None, "--types", metavar="TYPES.json", help="SpERT types file; entity/relation types not in it are errors"),
    text_key: str = Opt("text", "--text-key", help="Label Studio: the key of the text in a task's data"),
    # fmt: on
):
    """Import Prodigy, brat or Label Studio data.

    Reads the entity and relation annotations of rel.manual (Prodigy),
    brat standoff or a Label Studio JSON export and writes a .spacy file like
    `convert`'s: entities in doc.spans[SPANS_KEY], relations in
    doc._.relations. Character offsets are mapped onto the tokens of --lang
    or --model. Prints what was imported, skipped and left out; nothing is
    written if any record is invalid.
    """
    from .importers import FORMATS, import_file

    if fmt not in FORMATS:
        fail(f"unknown FORMAT {fmt!r} (choose {', '.join(FORMATS)})", status=2)
    with _user_errors():
        report = import_file(fmt, input_path, output_path, lang=lang, model=model, spans_key=spans_key,
                             strict=strict, split_sentences=split_sentences, types_path=types, text_key=text_key)
    for level, text in report.messages():
        if level == "text":
            typer.echo(text)
        else:
            getattr(msg, level)(text)
    msg.good(f"Saved {output_path}")


# Rendering and serving ---------------------------------------------------------


@app.command("render")
def render_cli(
    # fmt: off
    source: str = Arg(..., help="predict's JSONL output or a .spacy file; with --text: a pipeline; with --model: any input of predict", show_default=False),
    output_path: Path = Arg(..., help="HTML file to write", show_default=False),
    text: Optional[List[str]] = Opt(None, "--text", help="A text to tag with the pipeline SOURCE (repeatable)"),
    model: Optional[str] = Opt(None, "--model", help="Tag SOURCE with this pipeline first"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's, or sc)"),
    text_key: str = Opt("text", "--text-key", help="JSONL field with the text (with --model)"),
    split: str = Opt("auto", "--split", help="Figures per sentence (auto: when the docs have sentences) or paragraph (auto, paragraph, none)"),
    max_width: int = Opt(960, "--max-width", help="Width of a row of text in px"),
    table: bool = Opt(True, "--table/--no-table", help="Add a table of the entities and relations"),
    # fmt: on
):
    """Draw entities and relations as HTML.

    Writes one standalone HTML page that shows each doc's text with its
    entities (labels and scores; overlapping ones stacked) and its relations
    as labelled, directed arcs with scores, one figure per sentence or
    paragraph. SOURCE is predict's JSONL output or a .spacy file (drawn as
    they are); a pipeline, with --text; or any input of predict, with
    --model to tag it first.
    """
    from .visualize import render_file

    with _user_errors():
        n = render_file(source, output_path, model=model, texts=text, spans_key=spans_key, text_key=text_key,
                        split=split, max_width=max_width, table=table)
    msg.good(f"Wrote {n} docs to {output_path}")


@app.command("serve")
def serve_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline directory or package name", show_default=False),
    host: str = Opt("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all; the default: this machine only)"),
    port: int = Opt(8000, "--port", "-p", help="Port"),
    max_chars: int = Opt(100_000, "--max-chars", help="Most characters of one text (more: 413)"),
    max_texts: int = Opt(64, "--max-texts", help="Most texts of one request (more: 413)"),
    batch_size: int = Opt(32, "--batch-size", "-b", help="Most texts the model runs as one batch"),
    spans_key: Optional[str] = Opt(None, "--spans-key", help="Span group of the entities (default: the spert component's)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    # fmt: on
):
    """Serve a web page and a JSON API.

    Loads MODEL once and serves, with uvicorn: a page (/) with a text box
    that draws the entities and relations found and lists them with their
    scores; POST /extract ({"text": ...} or {"texts": [...]}, answered in the
    schema of predict's JSONL); GET /health; the OpenAPI description
    (/openapi.json, /docs). Needs the serve extra: pip install
    'spacy-spert[serve]'.
    """
    from .serve import serve

    with _user_errors():
        try:
            serve(model, host=host, port=port, spans_key=spans_key, max_chars=max_chars, max_texts=max_texts,
                  batch_size=batch_size, gpu_id=gpu_id)
        except ImportError as e:
            fail(str(e))

@app.command("ray-throughput")
def ray_throughput_cli(
    # fmt: off
    model: Path = Arg(..., help="Trained pipeline (a directory)", show_default=False),
    corpus: Path = Arg(..., help=".spacy file whose texts are tagged", show_default=False),
    results: Path = Opt(..., "--results", help="Results JSON file (the tables go to the .md next to it)", show_default=False),
    n_docs: int = Opt(2000, "--n-docs", help="Docs per run: the corpus's texts repeated and shuffled"),
    seed: int = Opt(0, "--seed", help="Seed of the shuffle"),
    actors: str = Opt("1,2", "--actors", help="Numbers of Ray actors to time"),
    num_cpus: Optional[int] = Opt(None, "--num-cpus", help="CPUs of the local Ray cluster (default: all)"),
    repeats: int = Opt(2, "--repeats", help="Alternating rounds; docs/s from the median"),
    # fmt: on
):
    """Docs/s of predict --engine ray.

    Times single-process `predict` and `predict --engine ray` with each
    number of --actors (one CPU each) on a local Ray cluster, same JSONL
    input, in alternating rounds; measures the fixed cost of a Ray run
    (actor start, pipeline load); checks that the outputs are the same; and
    writes --results (JSON) and its tables (.md) with the command, versions,
    seed and machine. Needs the ray extra.
    """
    from .experiments.ray_throughput import markdown, run_ray_throughput

    with _user_errors():
        try:
            out = run_ray_throughput(model, corpus, results, n_docs=n_docs, seed=seed, actors=_ints(actors),
                                     num_cpus=num_cpus, repeats=repeats)
        except ImportError as e:
            fail(f"{e}: pip install 'spacy-spert[ray]'")
    typer.echo(markdown(out))


def main(argv: Optional[List[str]] = None) -> None:
    """Run the app as ``python -m spacy_spert`` (exits with the command's status).

    argv (Optional[List[str]]): The arguments (default: ``sys.argv[1:]``).
    """
    typer.main.get_command(app)(args=argv, prog_name=PROG)


# `python -m spacy spert ...`: spaCy's setup_cli loads the `spacy_cli` entry
# points (this module), and this adds the app to spaCy's own.
spacy_app.add_typer(app, name=NAME)
