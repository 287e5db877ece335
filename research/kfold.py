"""k-fold cross-validation: train and evaluate one model per fold, then the
mean and standard deviation of every score.

Folds are discovered in a corpus folder: every file matching the train pattern
(``{fold}`` stands for the fold id) whose test file exists is a fold. For ADE
(``spacy project run convert --vars.dataset ade``) that gives the 10 folds
``split_0`` ... ``split_9`` of SpERT's split.

For each fold (the paper protocol; ADE has no dev set), in fresh processes:
``python -m spacy train CONFIG --output DIR/fold_<id> --paths.train <train>
--paths.dev <test>`` (the test set is only logged during training, nothing is
selected on it), then the final model (``model-last``; ``model-best`` selects
on the test set and is not the paper protocol) is evaluated on the test file,
writing ``DIR/fold_<id>/metrics.json``. With ``resume`` a fold that already has
its metrics.json is not run again.

The metrics file holds the fold ids, each fold's scores, and for every numeric
score (nested per-type scores flattened to ``key.type.p``) its mean and its
sample standard deviation over the folds (0 for one fold).
"""

import json
import math
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, TypedDict

from wasabi import msg

from spacy_spert.pipeline.scorer import SCORE_NAMES

from .runs import evaluate_command, run, train_command

Folds = Dict[str, Dict[str, Path]]


class Aggregate(TypedDict):
    """What :func:`aggregate` returns, by flattened score key."""

    mean: Dict[str, float]
    std: Dict[str, float]
    n: Dict[str, int]  # the folds that have the key


def discover_folds(corpus_dir: Path, train_pattern: str, test_pattern: str) -> Folds:
    """The folds in a corpus folder.

    corpus_dir (Path): The folder with the folds' .spacy files.
    train_pattern (str): A train file name with ``{fold}``, e.g. ``"split_{fold}_train.spacy"``.
    test_pattern (str): The test file name with ``{fold}``.
    RETURNS (Dict[str, Dict[str, Path]]): Fold id -> {"train": path, "test":
        path}, sorted by id (numerically where the ids are numbers).
    RAISES: ValueError if a pattern has no ``{fold}``.
    """
    if "{fold}" not in train_pattern or "{fold}" not in test_pattern:
        raise ValueError("the train and test patterns must contain '{fold}'")
    before, after = train_pattern.split("{fold}", 1)
    regex = re.compile(re.escape(before) + r"(?P<fold>.+?)" + re.escape(after) + r"$")
    folds = {}
    for path in Path(corpus_dir).iterdir():
        match = regex.match(path.name)
        if not match:
            continue
        fold = match.group("fold")
        test = Path(corpus_dir) / test_pattern.replace("{fold}", fold)
        if test.exists():
            folds[fold] = {"train": path, "test": test}
    key = (lambda f: (0, int(f), f)) if all(f.isdigit() for f in folds) else (lambda f: (1, 0, f))
    return {fold: folds[fold] for fold in sorted(folds, key=key)}


def select_folds(folds: Folds, wanted: str) -> Folds:
    """The folds named in ``wanted``.

    folds (Folds): As returned by :func:`discover_folds`.
    wanted (str): ``"all"`` or comma-separated fold ids, e.g. ``"0,3"``.
    RETURNS (Folds): The selected folds, in the order given.
    RAISES: ValueError naming the unknown folds.
    """
    if wanted.strip().lower() == "all":
        return folds
    ids = [f.strip() for f in wanted.split(",") if f.strip()]
    missing = [f for f in ids if f not in folds]
    if missing:
        raise ValueError(f"unknown folds {missing}; found: {list(folds)}")
    return {f: folds[f] for f in ids}


def flatten(scores: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """Numeric scores with nested dicts flattened to dotted keys.

    scores (Dict[str, Any]): E.g. {"spert_ent_per_type": {"Drug": {"f": 0.9}}}.
    prefix (str): Prepended to every key.
    RETURNS (Dict[str, float]): E.g. {"spert_ent_per_type.Drug.f": 0.9}; booleans
        and other non-numbers are left out.
    """
    flat: Dict[str, float] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def aggregate(per_fold: Dict[str, Dict[str, Any]]) -> Aggregate:
    """Mean and sample standard deviation (ddof=1; 0.0 for one fold) of every
    numeric score. A per-type score missing in a fold (the type does not occur
    there) is averaged over the folds that have it.

    per_fold (Dict[str, Dict[str, Any]]): Fold id -> its scores.
    RETURNS (Aggregate): {"mean": {key: ..}, "std": {key: ..},
        "n": {key: number of folds with the key}}, keys flattened (:func:`flatten`).
    """
    flat = {fold: flatten(scores) for fold, scores in per_fold.items()}
    keys = sorted({key for scores in flat.values() for key in scores})
    mean: Dict[str, float] = {}
    std: Dict[str, float] = {}
    count: Dict[str, int] = {}
    for key in keys:
        values = [scores[key] for scores in flat.values() if key in scores]
        m = sum(values) / len(values)
        mean[key] = m
        std[key] = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        count[key] = len(values)
    return {"mean": mean, "std": std, "n": count}


def run_kfold(
    config: Path,
    corpus_dir: Path,
    output: Path,
    metrics: Path,
    *,
    train_pattern: str = "split_{fold}_train.spacy",
    test_pattern: str = "split_{fold}_test.spacy",
    folds: str = "all",
    model: str = "last",
    gpu_id: int = -1,
    resume: bool = False,
    overrides: Sequence[str] = (),
) -> Dict[str, Any]:
    """Train and evaluate every fold; write the metrics file.

    config (Path): The training config.
    corpus_dir (Path): The folder with the folds' .spacy files.
    output (Path): The folder for the fold models (``fold_<id>/``).
    metrics (Path): The JSON file for the aggregated scores.
    train_pattern, test_pattern (str): File names with ``{fold}``.
    folds (str): ``"all"`` or comma-separated fold ids.
    model (str): ``"last"`` or ``"best"``: the model to evaluate.
    gpu_id (int): The GPU, -1 for the CPU.
    resume (bool): Skip folds that have a metrics.json.
    overrides (Sequence[str]): ``--section.key value`` config overrides for training.
    RETURNS (Dict[str, Any]): What was written to ``metrics``.
    RAISES: ValueError if there are no folds or unknown ones are asked for or
        ``model`` is neither ``"last"`` nor ``"best"``;
        subprocess.CalledProcessError if a run fails.
    """
    if model not in ("last", "best"):
        raise ValueError(f"the model to evaluate must be 'last' or 'best', got {model!r}")
    found = discover_folds(corpus_dir, train_pattern, test_pattern)
    if not found:
        raise ValueError(f"no folds in {corpus_dir} (looked for {train_pattern} with a matching {test_pattern})")
    selected = select_folds(found, folds)
    msg.info(f"{len(selected)} folds: {', '.join(selected)}")
    per_fold: Dict[str, Dict[str, Any]] = {}
    for fold, files in selected.items():
        fold_dir = Path(output) / f"fold_{fold}"
        metrics_path = fold_dir / "metrics.json"
        if resume and metrics_path.exists():
            msg.info(f"fold {fold}: using {metrics_path}")
        else:
            run(train_command(config, fold_dir, files["train"], files["test"], gpu_id, overrides))
            run(evaluate_command(fold_dir / f"model-{model}", files["test"], metrics_path, gpu_id))
        per_fold[fold] = json.loads(metrics_path.read_text(encoding="utf8"))
    stats = aggregate(per_fold)
    result = {
        "config": str(config),
        "corpus_dir": str(corpus_dir),
        "model": f"model-{model}",
        "overrides": list(overrides),
        "folds": list(selected),
        "n_folds": len(selected),
        **stats,
        "per_fold": per_fold,
    }
    Path(metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics).write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
    return result


def summary(result: Dict[str, Any]) -> List[str]:
    """Lines with the mean +- standard deviation of each headline F1 (x 100).

    result (Dict[str, Any]): As returned by :func:`run_kfold`.
    RETURNS (List[str]): One line per score of ``SCORE_NAMES`` in the result.
    """
    mean, std = result["mean"], result["std"]
    return [
        f"  {key:<26} {100 * mean[key]:6.2f} +- {100 * std[key]:5.2f}"
        for key in (score.key("f") for score in SCORE_NAMES)
        if key in mean
    ]
