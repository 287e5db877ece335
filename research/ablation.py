"""The SpERT.MT ablation results in one Markdown table.

Reads the results files that :mod:`research.benchmark` wrote
for SpERT, SpERT.MT (``{mt_prefix}-seed{seed}.json``) and SpERT.MT without
each of its three parts (``{mt_prefix}-no_multitask-seed{seed}.json``,
``-no_iou_loss``, ``-no_entity_logits``), and writes a table of NER and
relation F1 (micro and macro) with the difference to SpERT.MT. A missing
results file is a row of dashes, not an error, so the table can be written
while runs are still going.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from spacy_spert.pipeline.scorer import ScoreName, score_name

from .records import versions_text

# The table's columns: F1 of these scores (names as in SCORE_NAMES).
COLUMNS: List[ScoreName] = [
    score_name(name)
    for name in ("ner_micro", "ner_macro", "rel_strict_micro", "rel_strict_macro", "rel_boundaries_micro")
]
# (suffix of the results file after the SpERT.MT prefix, row name)
ABLATIONS = [
    ("", "SpERT.MT"),
    ("-no_multitask", "SpERT.MT - multitask heads (-MTL)"),
    ("-no_iou_loss", "SpERT.MT - IoU-scaled loss (-EIL)"),
    ("-no_entity_logits", "SpERT.MT - entity logits in relations"),
]
Row = Tuple[str, Path, Optional[Dict[str, Any]]]


def read(path: Path) -> Optional[Dict[str, Any]]:
    """RETURNS (Optional[Dict[str, Any]]): The results file, or None if it does not exist."""
    return json.loads(path.read_text(encoding="utf8")) if path.exists() else None


def table(rows: List[Row], reference: Optional[Dict[str, Any]]) -> str:
    """A Markdown table of the F1 of ``COLUMNS``.

    rows (List[Row]): (name, results file, its results or None), one row each.
    reference (Optional[Dict[str, Any]]): The results every other row is
        compared with (SpERT.MT): the difference follows each F1 in brackets.
    RETURNS (str): The table.
    """
    head = "| model | " + " | ".join(score.label() for score in COLUMNS) + " | results file |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, path, results in rows:
        cells = []
        for score in COLUMNS:
            if results is None:
                cells.append("–")
                continue
            f = results["metrics"][score.name]["f"]
            if reference is not None and results is not reference:
                cells.append(f"{f:.2f} ({f - reference['metrics'][score.name]['f']:+.2f})")
            else:
                cells.append(f"{f:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | `{path}` |")
    return "\n".join(lines) + "\n"


def ablation_table(spert: Path, mt_prefix: str, seed: int = 0) -> str:
    """The ablation table and a line saying what the numbers are.

    spert (Path): The SpERT results file.
    mt_prefix (str): The SpERT.MT results files without ``-seed{seed}.json``
        (and without the ablation suffixes).
    seed (int): The seed in the results file names.
    RETURNS (str): Markdown.
    """
    rows: List[Row] = [("SpERT", Path(spert), read(Path(spert)))]
    for suffix, name in ABLATIONS:
        path = Path(f"{mt_prefix}{suffix}-seed{seed}.json")
        rows.append((name, path, read(path)))
    reference = rows[1][2]
    found = [r for _, _, r in rows if r is not None]
    text = table(rows, reference)
    if found:
        first = found[0]
        text += (
            f"\nF1 x 100 on {first['test']}, model-last after {first['epochs']} epochs on {first['train']}, "
            f"seed {first['seed']}; in brackets: the difference to SpERT.MT. "
            f"Versions: {versions_text(first['versions'])}.\n"
        )
    return text
