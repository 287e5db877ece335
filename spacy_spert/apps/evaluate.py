"""Evaluate a pipeline on a .spacy corpus and show SpERT's scores.

:func:`evaluate` does what spaCy's ``evaluate`` does (the same scores and
JSON as ``python -m spacy evaluate``, whose console table leaves custom
scores out) in one pass of the pipeline, whose predictions also make the
error-analysis report (``--report``, ``apps/report/``); :func:`score_table`
shows NER and relation precision, recall and F1, micro and macro, relations
in the "strict" mode (spans, entity types and relation type must match) and
the "boundaries" mode (entity types ignored).
"""

import errno
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.training import Example

from ..io.files import check_output_path, write_atomic
from ..pipeline.scorer import AVERAGES, METRIC_LABELS, SCORE_NAMES

# Examples per error bucket in the report.
REPORT_EXAMPLES = 20


class ExampleKeepingScorer(Scorer):
    """spaCy's Scorer that keeps the examples it scores (their predicted docs
    processed by the pipeline), so the report needs no second pass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.examples: List[Example] = []

    def score(self, examples: Iterable[Example], *, per_component: bool = False) -> Dict[str, Any]:
        self.examples = list(examples)
        return super().score(self.examples, per_component=per_component)


def report_json_path(report: Union[str, "os.PathLike[str]"]) -> Path:
    """The JSON file of a report: next to the HTML, with the suffix ``.json``
    (``report.html`` -> ``report.json``).

    report (str / Path): The report's HTML file.
    RETURNS (Path): The JSON file.
    RAISES: ValueError if the HTML file's name ends in ``.json``.
    """
    path = Path(report)
    if path.suffix.lower() == ".json":
        raise ValueError(f"--report {path}: the report is HTML (its JSON goes next to it), e.g. report.html")
    return path.with_suffix(".json")


def spert_settings(nlp: Language) -> Tuple[str, List[str]]:
    """The span group and the symmetric relation types of the pipeline's
    first ``spert`` component (the settings its scorer uses).

    nlp (Language): The pipeline.
    RETURNS (Tuple[str, List[str]]): ``(spans_key, symmetric_relations)``;
        ``("sc", [])`` without a ``spert`` component.
    """
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == "spert":
            config = nlp.get_pipe_config(name)
            return config.get("spans_key", "sc"), list(config.get("symmetric_relations") or [])
    return "sc", []


def evaluate(
    model: Union[str, Path],
    data_path: Path,
    output: Optional[Path] = None,
    gpu_id: int = -1,
    report: Optional[Path] = None,
    report_examples: int = REPORT_EXAMPLES,
) -> Dict[str, Any]:
    """Score a pipeline on gold data as spaCy's evaluate does (a fixed random
    seed, the corpus read with spaCy's ``Corpus``, ``nlp.evaluate``) and,
    with ``report``, write the error-analysis report of the same predictions.

    model (Union[str, Path]): A pipeline directory or package name.
    data_path (Path): A .spacy file (or folder) with gold annotation.
    output (Optional[Path]): A JSON file for all scores (folders are created).
    gpu_id (int): The GPU, -1 for the CPU.
    report (Optional[Path]): An HTML file for the report; its JSON goes next
        to it (:func:`report_json_path`).
    report_examples (int): The most examples per error bucket.
    RETURNS (Dict[str, Any]): The scores, fractions in [0, 1].
    RAISES: ValueError if an output is the gold file, the pipeline or another
        output (nothing is read); FileNotFoundError without ``data_path``.
    """
    from spacy import util
    from spacy.cli._util import setup_gpu
    from spacy.training import Corpus

    outputs = [Path(p) for p in (output, report, report_json_path(report) if report else None) if p is not None]
    for path in outputs:
        check_output_path(path, data_path, read_suffixes=(".spacy",))  # a folder: its .spacy files are read
        check_output_path(path, model)
    if len({p.resolve() for p in outputs}) < len(outputs):
        raise ValueError(f"--output and the report's files must differ: {', '.join(map(str, outputs))}")
    data_path = Path(data_path)
    if not data_path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(data_path))
    util.fix_random_seed()
    setup_gpu(gpu_id, silent=True)
    corpus = Corpus(data_path, gold_preproc=False)
    nlp = util.load_model(model)
    scorer = ExampleKeepingScorer(nlp=nlp)
    scores = nlp.evaluate(list(corpus(nlp)), scorer=scorer)
    if output is not None:
        import srsly

        write_atomic((srsly.json_dumps(scores, indent=2) + "\n").encode("utf8"), Path(output))
    if report is not None:
        from .report import analyse, write_report

        spans_key, symmetric = spert_settings(nlp)
        analysis = analyse(
            scorer.examples, spans_key=spans_key, symmetric_relations=symmetric, max_examples=report_examples
        )
        write_report(analysis, report, report_json_path(report), title=f"{model} on {data_path}")
    return scores


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
