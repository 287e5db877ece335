"""Evaluate a SpERT pipeline on a .spacy corpus, print the SpERT scores and
write all scores as JSON.

    python scripts/evaluate.py MODEL DATA.spacy [--output metrics.json] [--gpu-id -1]

This runs spaCy's ``evaluate`` (same scores and JSON as ``python -m spacy
evaluate``, whose console table does not show custom scores) and prints NER
and relation precision, recall and F1, micro and macro, with relations in the
"strict" mode (spans, entity types and relation type must match) and the
"boundaries" mode (entity types ignored). Values are percentages in the table
and fractions in the JSON.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

MODES = [
    ("NER", "spert_ent"),
    ("RE strict", "spert_rel"),
    ("RE boundaries", "spert_rel_bound"),
]


def score_table(scores: Dict[str, Any]) -> str:
    """A plain-text table of the SpERT scores in ``scores``."""
    header = f"{'':<15}{'P':>8}{'R':>8}{'F1':>8}{'macro P':>10}{'macro R':>10}{'macro F1':>10}"
    lines = [header, "-" * len(header)]
    for name, prefix in MODES:
        values = [scores.get(f"{prefix}_{suffix}") for suffix in ("p", "r", "f", "macro_p", "macro_r", "macro_f")]
        cells = ["-" if v is None else f"{100 * v:.2f}" for v in values]
        lines.append(f"{name:<15}" + "".join(f"{c:>8}" for c in cells[:3]) + "".join(f"{c:>10}" for c in cells[3:]))
    return "\n".join(lines)


def evaluate(model: str, data_path: Path, output: Optional[Path] = None, gpu_id: int = -1) -> Dict[str, Any]:
    """Run spaCy's evaluate; write the JSON to ``output`` if given; return the scores."""
    from spacy.cli.evaluate import evaluate as spacy_evaluate

    import spacy_spert  # noqa: F401

    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
    return spacy_evaluate(model, data_path, output=output, use_gpu=gpu_id, silent=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="pipeline directory or package name")
    parser.add_argument("data_path", type=Path, help=".spacy file (or folder) with gold annotation")
    parser.add_argument("--output", "-o", type=Path, default=None, help="JSON file for all scores")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1, help="GPU id, -1 for CPU")
    args = parser.parse_args(argv)
    scores = evaluate(args.model, args.data_path, args.output, args.gpu_id)
    print(f"{args.model} on {args.data_path}")
    print(score_table(scores))
    if args.output is not None:
        print(f"Saved all scores to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
