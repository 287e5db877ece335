"""``evaluate``: score a pipeline on gold data, optionally with the
error-analysis report."""

from pathlib import Path
from typing import Optional

import typer
from spacy.cli._util import Arg, Opt
from wasabi import msg

from .util import app, user_errors


@app.command("evaluate")
def evaluate_cli(
    model: str = Arg(..., help="Pipeline directory or package name", show_default=False),
    data_path: Path = Arg(..., help=".spacy file (or folder) with gold annotation", show_default=False),
    output: Optional[Path] = Opt(None, "--output", "-o", help="JSON file for all scores", dir_okay=False),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    report: Optional[Path] = Opt(None, "--report", help="HTML file for the error analysis (its JSON next to it)",
                                 dir_okay=False),
    report_examples: int = Opt(20, "--report-examples", help="Most examples per error bucket in the report", min=0),
):  # fmt: skip
    """Score a pipeline; print SpERT's table.

    Runs spaCy's evaluate (same JSON as `spacy evaluate`) and prints SpERT's NER and relation P/R/F1, micro and
    macro, relations in strict and boundaries mode: percentages in the table, fractions in the JSON. With --report,
    the same predictions also give the error analysis: per-label scores, the entity confusion matrix, error buckets
    with examples and calibration, as static HTML and the same content as JSON next to it (REPORT.json).
    """
    from ..apps.evaluate import evaluate, report_json_path, score_table

    with user_errors():
        scores = evaluate(model, data_path, output, gpu_id, report=report, report_examples=report_examples)
    msg.divider(f"{model} on {data_path}")
    typer.echo(score_table(scores))
    if output is not None:
        msg.good(f"Saved all scores to {output}")
    if report is not None:
        msg.good(f"Saved the error analysis to {report} and {report_json_path(report)}")
