"""``evaluate``: score a pipeline on gold data."""

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
):  # fmt: skip
    """Score a pipeline; print SpERT's table.

    Runs spaCy's evaluate (same JSON as `spacy evaluate`) and prints SpERT's NER and relation P/R/F1, micro and macro, relations in
    strict and boundaries mode: percentages in the table, fractions in the JSON.
    """
    from ..apps.evaluate import evaluate, score_table

    with user_errors():
        scores = evaluate(model, data_path, output, gpu_id)
    msg.divider(f"{model} on {data_path}")
    typer.echo(score_table(scores))
    if output is not None:
        msg.good(f"Saved all scores to {output}")
