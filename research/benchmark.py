"""Train and evaluate a SpERT pipeline on a benchmark, timing both; write a
results file.

1. Trains with the paper protocol through ``python -m spacy train`` in a fresh
   process (train on TRAIN for ``epochs`` epochs, TEST only logged at each
   evaluation), timing the run. The config's own schedule is used.
2. Evaluates model-last on TEST: NER and relation P/R/F1, micro and macro,
   relations in strict and boundaries mode (x100, as papers report them).
3. Times inference on the TEST texts for several batch sizes, for the full
   pipeline and for the transformer alone in the same process, and reports
   the head's share of inference time: 1 - transformer time / full time.
   (No batch sizes leave this step out, e.g. for ablation runs.)
4. Writes RESULTS (JSON) and RESULTS with .md (a table), with the command,
   package versions, seed and machine.

Further ``--section.key value`` overrides go to the training run (as ``spacy
train`` takes them) and are recorded in RESULTS, e.g.
``--components.spert.model.multitask false`` for an ablation.

The training run evaluates once per epoch, as SpERT does
(``training.eval_frequency`` = steps per epoch, from the number of training
docs and the config's batch size, unless an override sets it). Seconds per
training epoch = (training wall time - the per-epoch evaluations, timed as in
step 2) / epochs.
"""

import resource
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy.language import Language

from spacy_spert.pipeline.scorer import SCORE_MODES, SCORE_NAMES, score_keys

from .measure import run_pipe
from .records import recorded_command, save_results
from .runs import run, train_command

# The modes whose per-type scores results files keep.
PER_TYPE_MODES = ("ner", "rel_strict")


def time_pipe(nlp: Language, texts: List[str], batch_size: int, repeats: int = 2) -> float:
    """Time ``nlp.pipe`` over the texts after one warm-up batch.

    nlp (Language): The pipeline. texts (List[str]): The texts.
    batch_size (int): The batch size. repeats (int): How many timed runs.
    RETURNS (float): The best wall time in seconds.
    """
    run_pipe(nlp, texts[:batch_size], batch_size)  # warm-up
    return min(run_pipe(nlp, texts, batch_size) for _ in range(repeats))


def metrics_from_scores(scores: Dict[str, Any]) -> Dict[str, Any]:
    """The ``metrics`` of a results file: each of ``SCORE_NAMES`` as
    {"p", "r", "f"} x 100 rounded to 2 places, then the per-type scores of
    ``PER_TYPE_MODES`` as fractions.

    scores (Dict[str, Any]): Scores as returned by ``score_spert``.
    RETURNS (Dict[str, Any]): E.g. {"ner_micro": {"p": 84.93, ...}, ..., "ner_per_type": {...}}.
    """
    metrics: Dict[str, Any] = {
        score.name: {m: round(100 * scores[score.key(m)], 2) for m in ("p", "r", "f")} for score in SCORE_NAMES
    }
    for mode in SCORE_MODES:
        if mode.name in PER_TYPE_MODES:
            metrics[f"{mode.name}_per_type"] = scores[score_keys(mode.prefix)["per_type"]]
    return metrics


def inference_speed(nlp: Language, texts: List[str], batch_sizes: Sequence[int]) -> Dict[str, Any]:
    """Docs per second of the pipeline and of its transformer alone.

    nlp (Language): The pipeline (with a ``transformer`` component).
    texts (List[str]): The texts. batch_sizes (Sequence[int]): The batch sizes.
    RETURNS (Dict[str, Any]): Batch size -> {"pipeline_docs_per_s",
        "transformer_docs_per_s", "head_share"}.
    """
    rows: Dict[str, Any] = {}
    for batch_size in batch_sizes:
        full = time_pipe(nlp, texts, batch_size)
        with nlp.select_pipes(enable=["transformer"]):
            bare = time_pipe(nlp, texts, batch_size)
        rows[str(batch_size)] = {
            "pipeline_docs_per_s": round(len(texts) / full, 1),
            "transformer_docs_per_s": round(len(texts) / bare, 1),
            "head_share": round(1 - bare / full, 3),
        }
    return rows


def steps_per_epoch(config: Path, train: Path, overrides: Sequence[str] = ()) -> int:
    """The updates per epoch of training ``config`` (with the ``--section.key
    value`` overrides) on the corpus ``train``, counted as
    ``spacy-spert.warmup_linear_epochs.v1`` counts them (the reader's
    ``limit`` included).

    RETURNS (int): The steps per epoch.
    """
    from spacy import util
    from spacy.cli._util import parse_config_overrides

    from spacy_spert.training import schedules

    cfg = util.load_config(config, overrides=parse_config_overrides(list(overrides)), interpolate=True)
    n_docs = schedules.count_corpus_docs(train, int(cfg["corpora"]["train"].get("limit") or 0))
    return schedules.steps_per_epoch(n_docs, int(cfg["training"]["batcher"]["size"]))


def settings(config: Path, train: Path, test: Path, epochs: int, seed: int, overrides: Sequence[str]) -> Dict[str, Any]:
    """The settings a benchmark results file records first, and that ``seeds
    --resume`` checks before it reuses the file.

    config (Path): The training config. train (Path), test (Path): The corpora.
    epochs (int): Training epochs. seed (int): ``system.seed``.
    overrides (Sequence[str]): The ``--section.key value`` config overrides.
    RETURNS (Dict[str, Any]): config, train, test, epochs, seed, overrides (JSON-serializable).
    """
    return {
        "config": str(config),
        "train": str(train),
        "test": str(test),
        "epochs": epochs,
        "seed": seed,
        "overrides": list(overrides),
    }


def run_benchmark(
    config: Path,
    train: Path,
    test: Path,
    output_dir: Path,
    results_path: Path,
    *,
    epochs: int = 20,
    seed: int = 0,
    gpu_id: int = -1,
    batch_sizes: Sequence[int] = (1, 8, 64),
    skip_train: bool = False,
    overrides: Sequence[str] = (),
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Train, evaluate and time; write the results file and its table.

    config (Path): The training config.
    train (Path): The training corpus. test (Path): The test corpus.
    output_dir (Path): The training output (model-last is evaluated).
    results_path (Path): The JSON results file; the table goes next to it (.md).
    epochs (int): Training epochs (``training.max_epochs``).
    seed (int): ``system.seed``.
    gpu_id (int): The GPU, -1 for the CPU.
    batch_sizes (Sequence[int]): Inference batch sizes to time; empty: no timing.
    skip_train (bool): Reuse the model in ``output_dir``.
    overrides (Sequence[str]): Further ``--section.key value`` config overrides.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    import spacy
    from spacy.training import Corpus

    overrides = list(overrides)
    train_seconds = None
    if not skip_train:
        if "--training.eval_frequency" not in overrides:
            overrides = ["--training.eval_frequency", str(steps_per_epoch(config, train, overrides)), *overrides]
        cmd = train_command(
            config,
            output_dir,
            train,
            test,
            gpu_id,
            ["--training.max_epochs", str(epochs), "--system.seed", str(seed), *overrides],
        )
        start = time.perf_counter()
        run(cmd)
        train_seconds = time.perf_counter() - start

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(Path(output_dir) / "model-last")
    # As `spacy evaluate` reads it: converted docs keep their gold tokens.
    examples = list(Corpus(str(test))(nlp))
    start = time.perf_counter()
    scores = nlp.evaluate(examples)
    eval_seconds = time.perf_counter() - start
    texts = [eg.reference.text for eg in examples]
    n_evals = epochs + 1  # spaCy evaluates at step 0 and once per epoch
    results = {
        **settings(config, train, test, epochs, seed, overrides),
        "command": recorded_command(command),
        "metrics": metrics_from_scores(scores),
        "training": {
            "wall_seconds": None if train_seconds is None else round(train_seconds, 1),
            "seconds_per_epoch": (
                None if train_seconds is None else round((train_seconds - n_evals * eval_seconds) / epochs, 1)
            ),
        },
        "inference": {
            "n_docs": len(texts),
            "evaluate_seconds": round(eval_seconds, 2),
            "by_batch_size": inference_speed(nlp, texts, batch_sizes),
            "peak_rss_gb_inference_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        },
    }
    return save_results(results_path, results, markdown, gpu_id=gpu_id, machine_info={"gpu_id": gpu_id})


def markdown(results: Dict[str, Any]) -> str:
    """The tables of a results file: P/R/F1 of each of ``SCORE_NAMES``,
    training time, inference speed by batch size, the command.

    results (Dict[str, Any]): As written by :func:`run_benchmark`.
    RETURNS (str): Markdown.
    """
    m = results["metrics"]
    lines = [
        "| metric | P | R | F1 |",
        "|---|---|---|---|",
    ]
    for score in SCORE_NAMES:
        row = m[score.name]
        lines.append(f"| {score.name} | {row['p']:.2f} | {row['r']:.2f} | {row['f']:.2f} |")
    t = results["training"]
    lines += ["", f"Training: {t['seconds_per_epoch']} s per epoch ({t['wall_seconds']} s in all).", ""]
    lines += ["| batch size | pipeline docs/s | transformer alone docs/s | head share |", "|---|---|---|---|"]
    for bs, row in results["inference"]["by_batch_size"].items():
        lines.append(
            f"| {bs} | {row['pipeline_docs_per_s']} | {row['transformer_docs_per_s']} | {row['head_share']:.1%} |"
        )
    lines += ["", f"Command: `{results['command']}` (seed {results['seed']})", ""]
    return "\n".join(lines) + "\n"
