"""Evaluate a pipeline on a .spacy corpus and show SpERT's scores.

spaCy's ``evaluate`` gives the scores and writes the JSON (the same as
``python -m spacy evaluate``, whose console table leaves custom scores out);
:func:`score_table` shows NER and relation precision, recall and F1, micro and
macro, relations in the "strict" mode (spans, entity types and relation type
must match) and the "boundaries" mode (entity types ignored).
"""

from pathlib import Path
from typing import Any, Dict, Optional, Union

from ..io.files import check_output_path
from ..pipeline.scorer import AVERAGES, METRIC_LABELS, SCORE_NAMES


def evaluate(
    model: Union[str, Path], data_path: Path, output: Optional[Path] = None, gpu_id: int = -1
) -> Dict[str, Any]:
    """Run spaCy's evaluate.

    model (Union[str, Path]): A pipeline directory or package name.
    data_path (Path): A .spacy file (or folder) with gold annotation.
    output (Optional[Path]): A JSON file for all scores (folders are created).
    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Dict[str, Any]): The scores, fractions in [0, 1].
    RAISES: ValueError if ``output`` is the gold file or the pipeline (nothing is read).
    """
    from spacy.cli.evaluate import evaluate as spacy_evaluate

    if output is not None:
        check_output_path(output, data_path, read_suffixes=(".spacy",))  # a folder: its .spacy files are read
        check_output_path(output, model)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
    return spacy_evaluate(str(model), Path(data_path), output=output, use_gpu=gpu_id, silent=True)


def score_table(scores: Dict[str, Any]) -> str:
    """A plain-text table of the SpERT scores in ``scores``: one row per
    evaluation mode, micro and macro P, R and F1 as percentages ("-" where a
    score is missing).

    scores (Dict[str, Any]): Scores as returned by ``score_spert``.
    RETURNS (str): The table.
    """
    metrics = list(METRIC_LABELS)
    widths = [8] * len(metrics) + [10] * len(metrics)  # micro, then macro
    titles = [("" if average == "micro" else f"{average} ") + METRIC_LABELS[m] for average in AVERAGES for m in metrics]
    header = f"{'':<15}" + "".join(f"{t:>{w}}" for t, w in zip(titles, widths))
    lines = [header, "-" * len(header)]
    rows: Dict[str, list] = {}
    for score in SCORE_NAMES:
        rows.setdefault(score.mode.label, []).extend(scores.get(score.key(m)) for m in metrics)
    for label, values in rows.items():
        cells = ["-" if v is None else f"{100 * v:.2f}" for v in values]
        lines.append(f"{label:<15}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)
