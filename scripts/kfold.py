"""k-fold cross-validation: train and evaluate one model per fold, then write
the mean and standard deviation of every score.

    python scripts/kfold.py CONFIG CORPUS_DIR --output DIR --metrics FILE.json
        [--train-pattern "split_{fold}_train.spacy"] [--test-pattern "split_{fold}_test.spacy"]
        [--folds all|0,3,7] [--model last|best] [--gpu-id -1] [--resume]
        [config overrides, e.g. --training.max_epochs 20 --system.seed 1]

Folds are discovered in CORPUS_DIR: every file matching the train pattern
(``{fold}`` stands for the fold id) whose test file exists is a fold. For ADE
(``spacy project run convert --vars.dataset ade``) that gives the 10 folds
``split_0`` ... ``split_9`` of SpERT's split.

For each fold (the paper protocol; ADE has no dev set), in a fresh process:
``scripts/train.py CONFIG --output DIR/fold_<id> --paths.train <train>
--paths.dev <test>`` (the test set is only logged during training, nothing is
selected on it), then the final model (``model-last``; ``--model best``
selects on the test set and is not the paper protocol) is evaluated on the
test file with scripts/evaluate.py, writing ``DIR/fold_<id>/metrics.json``.
With ``--resume`` a fold that already has its metrics.json is not run again.

The metrics file holds the fold ids, each fold's scores, and for every numeric
score (nested per-type scores flattened to ``key.type.p``) its mean and its
sample standard deviation over the folds (0 for one fold).
"""
import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from evaluate import score_table  # noqa: E402

SUMMARY_KEYS = [
    "spert_ent_f", "spert_ent_macro_f", "spert_rel_f", "spert_rel_macro_f",
    "spert_rel_bound_f", "spert_rel_bound_macro_f",
]


def discover_folds(corpus_dir: Path, train_pattern: str, test_pattern: str) -> Dict[str, Dict[str, Path]]:
    """{fold id: {"train": path, "test": path}} for the folds in corpus_dir,
    sorted by id (numerically where the ids are numbers)."""
    if "{fold}" not in train_pattern or "{fold}" not in test_pattern:
        raise ValueError("the train and test patterns must contain '{fold}'")
    before, after = train_pattern.split("{fold}", 1)
    regex = re.compile(re.escape(before) + r"(?P<fold>.+?)" + re.escape(after) + r"$")
    folds = {}
    for path in corpus_dir.iterdir():
        match = regex.match(path.name)
        if not match:
            continue
        fold = match.group("fold")
        test = corpus_dir / test_pattern.replace("{fold}", fold)
        if test.exists():
            folds[fold] = {"train": path, "test": test}
    key = (lambda f: (0, int(f), f)) if all(f.isdigit() for f in folds) else (lambda f: (1, 0, f))
    return {fold: folds[fold] for fold in sorted(folds, key=key)}


def flatten(scores: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """Numeric scores with nested dicts flattened to dotted keys."""
    flat: Dict[str, float] = {}
    for key, value in scores.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def aggregate(per_fold: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0.0 for one fold) of every
    numeric score. A per-type score missing in a fold (the type does not occur
    there) is averaged over the folds that have it; "n" says how many."""
    flat = {fold: flatten(scores) for fold, scores in per_fold.items()}
    keys = sorted({key for scores in flat.values() for key in scores})
    mean, std, count = {}, {}, {}
    for key in keys:
        values = [scores[key] for scores in flat.values() if key in scores]
        m = sum(values) / len(values)
        mean[key] = m
        std[key] = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        count[key] = len(values)
    return {"mean": mean, "std": std, "n": count}


def run(cmd: List[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        description="k-fold cross-validation of a SpERT config (other arguments are config overrides)"
    )
    parser.add_argument("config_path", type=Path, help="training config")
    parser.add_argument("corpus_dir", type=Path, help="folder with the folds' .spacy files")
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder for the fold models")
    parser.add_argument("--metrics", "-m", type=Path, required=True, help="JSON file for the aggregated scores")
    parser.add_argument("--train-pattern", default="split_{fold}_train.spacy", help="train file name with {fold}")
    parser.add_argument("--test-pattern", default="split_{fold}_test.spacy", help="test file name with {fold}")
    parser.add_argument("--folds", default="all", help="'all' or comma-separated fold ids")
    parser.add_argument("--model", choices=["last", "best"], default="last", help="model to evaluate (last)")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1, help="GPU id, -1 for CPU")
    parser.add_argument("--resume", action="store_true", help="skip folds that have a metrics.json")
    args, overrides = parser.parse_known_args(argv)
    folds = discover_folds(args.corpus_dir, args.train_pattern, args.test_pattern)
    if not folds:
        print(
            f"error: no folds in {args.corpus_dir} (looked for {args.train_pattern} with a matching {args.test_pattern})",
            file=sys.stderr,
        )
        return 1
    if str(args.folds).strip().lower() != "all":
        wanted = [f.strip() for f in str(args.folds).split(",") if f.strip()]
        missing = [f for f in wanted if f not in folds]
        if missing:
            print(f"error: unknown folds {missing}; found: {list(folds)}", file=sys.stderr)
            return 1
        folds = {f: folds[f] for f in wanted}
    print(f"{len(folds)} folds: {', '.join(folds)}")
    per_fold: Dict[str, Dict[str, Any]] = {}
    for fold, files in folds.items():
        fold_dir = args.output / f"fold_{fold}"
        metrics_path = fold_dir / "metrics.json"
        if args.resume and metrics_path.exists():
            print(f"fold {fold}: using {metrics_path}")
        else:
            run(
                [sys.executable, str(HERE / "train.py"), str(args.config_path), "--output", str(fold_dir),
                 "--gpu-id", str(args.gpu_id), "--paths.train", str(files["train"]),
                 "--paths.dev", str(files["test"])] + overrides
            )
            run(
                [sys.executable, str(HERE / "evaluate.py"), str(fold_dir / f"model-{args.model}"),
                 str(files["test"]), "--output", str(metrics_path), "--gpu-id", str(args.gpu_id)]
            )
        per_fold[fold] = json.loads(metrics_path.read_text(encoding="utf8"))
    stats = aggregate(per_fold)
    result = {
        "config": str(args.config_path),
        "corpus_dir": str(args.corpus_dir),
        "model": f"model-{args.model}",
        "overrides": overrides,
        "folds": list(folds),
        "n_folds": len(folds),
        **stats,
        "per_fold": per_fold,
    }
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
    print(f"\nMean over {len(folds)} folds (sample standard deviation):")
    mean_scores = {key: stats["mean"][key] for key in stats["mean"] if "." not in key}
    print(score_table(mean_scores))
    for key in SUMMARY_KEYS:
        if key in stats["mean"]:
            print(f"  {key:<26} {100 * stats['mean'][key]:6.2f} +- {100 * stats['std'][key]:5.2f}")
    print(f"Saved {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
