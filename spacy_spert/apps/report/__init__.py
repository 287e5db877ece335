"""The error-analysis report of ``evaluate MODEL GOLD --report report.html``:
what a pipeline gets wrong on gold data, as a static HTML page and the same
content as JSON (``report.json`` next to it).

Its parts (``analysis.py`` computes them, ``html.py`` draws them):

- Scores: per label support (gold items), predicted items, TP, FP, FN, P, R
  and F1, micro and macro, for entities and for relations in the strict and
  the boundaries mode. Items and averages are the scorer's
  (``pipeline/scorer.py``, SpERT's evaluator), so the micro and macro values
  equal ``evaluate``'s.
- Entity confusion: gold type x predicted type over spans with the same
  boundaries, with a "missed" column (no predicted entity with a gold
  entity's boundaries) and a "spurious" row (no gold entity with a predicted
  entity's boundaries).
- Error buckets: every false positive and false negative (strict mode) is in
  exactly one bucket, so for entities FP = wrong type + wrong boundaries +
  both + spurious and FN = wrong type + wrong boundaries + both + missed, and
  for relations FP = wrong type + reversed + wrong endpoint + the two
  spurious buckets and FN = wrong type + reversed + wrong endpoint + the two
  missed buckets. Per doc, false positives are paired one to one with false
  negatives, step by step in this order of precedence (within a step, each
  false positive in document order takes the unpaired false negative it
  overlaps most, the earliest on a tie):

  Entities: 1. wrong type: the same boundaries, another type; 2. wrong
  boundaries: overlapping characters, the same type; 3. both: overlapping,
  another type. An unpaired false positive is spurious, an unpaired false
  negative missed (a prediction that overlaps only gold entities that were
  found or already paired is spurious).

  Relations: 1. wrong type: the same head and tail (boundaries and entity
  types), another relation type; 2. reversed: the same type, head and tail
  swapped; 3. wrong endpoint: the same type, the head overlapping the gold
  head and the tail the gold tail, one of them with other boundaries or
  another entity type. An unpaired false positive is "spurious between
  correct entities" when both its entities are gold entities, else
  "spurious because an entity is spurious"; an unpaired false negative is
  "missed with both entities found" when both its entities were predicted
  (strict), else "missed because an entity was missed".

  Each bucket lists examples: its errors grouped by their texts and labels
  (gold and predicted), the most frequent first, each drawn with the
  renderer (gold and prediction side by side, in a window of the doc); the
  page reorders them by score (highest or lowest first) without a script.
- Calibration: predictions in score bins against the share of them that is
  correct, for entities and relations (strict), as a table and an SVG plot.
"""

import json
import os
from typing import Any, Dict, Optional, Union

from ...io.files import write_atomic
from .analysis import analyse, calibration, confusion, prf_table
from .html import report_html

__all__ = ["analyse", "calibration", "confusion", "prf_table", "report_html", "write_report"]


def write_report(
    report: Dict[str, Any],
    html_path: Union[str, "os.PathLike[str]"],
    json_path: Optional[Union[str, "os.PathLike[str]"]] = None,
    title: str = "spacy-spert error analysis",
) -> None:
    """Write the report as HTML and, with ``json_path``, as JSON; each file is
    complete or absent (``io/files.write_atomic``).

    report (Dict[str, Any]): As :func:`analyse` returns it.
    html_path (str / Path): The HTML page.
    json_path (Optional[str / Path]): The JSON file (ASCII, escaped).
    title (str): The page's title.
    """
    from pathlib import Path

    write_atomic(report_html(report, title).encode("utf8"), Path(html_path))
    if json_path is not None:
        write_atomic(json.dumps(report, indent=1, allow_nan=False).encode("ascii") + b"\n", Path(json_path))
