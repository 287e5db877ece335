"""``tune-thresholds``: per-label thresholds chosen on dev data."""

from pathlib import Path
from typing import Optional

import typer
from spacy.cli._util import Arg, Opt
from wasabi import msg

from .util import app, user_errors


@app.command("tune-thresholds")
def tune_thresholds_cli(
    model: str = Arg(..., help="Trained pipeline (directory or package name)", show_default=False),
    dev_path: Path = Arg(..., help="Dev corpus (.spacy) with gold entities and relations", show_default=False),
    output: Path = Opt(..., "--output", "-o", help="Folder for the tuned pipeline (new, empty, or a pipeline it replaces)", show_default=False),
    min_support: int = Opt(10, "--min-support", help="Labels with fewer gold items on dev keep the global threshold"),
    floor: float = Opt(0.05, "--floor", help="Lowest threshold to choose (lower settings of the pipeline lower it)"),
    component: Optional[str] = Opt(None, "--component", help="The spert component (default: the only one)"),
    report_json: Optional[Path] = Opt(None, "--report-json", help="Also write the report here (always: OUTPUT/thresholds.json)", dir_okay=False),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
):  # fmt: skip
    """Tune per-label thresholds on dev data.

    Runs MODEL once over DEV with low thresholds and chooses a threshold per
    entity label (for NER micro F1), then per relation label (for RE strict
    micro F1, with the tuned entities): the exact optimum per label, labels in
    turn until none changes; see docs/evaluate-and-tune.md. No retraining,
    scores unchanged. Writes the tuned pipeline to --output (complete or
    absent; never over MODEL or DEV) with thresholds.json, and prints each
    label's dev support, threshold and F1 before and after.
    """
    from ..apps.thresholds import report_table, tune_pipeline

    with user_errors():
        report = tune_pipeline(
            model,
            dev_path,
            output,
            component_name=component,
            min_support=min_support,
            floor=floor,
            report_json=report_json,
            gpu_id=gpu_id,
        )
    msg.divider(f"{model} tuned on {dev_path}")
    typer.echo(report_table(report))
    msg.good(f"Saved the tuned pipeline to {output}")
