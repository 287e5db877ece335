"""`evaluate MODEL GOLD --report report.html`: one pass of the pipeline gives
the scores and the error analysis (HTML and report.json next to it), whose
numbers are the scores'; no report file replaces the gold data, the pipeline
or the scores file."""

import json

import pytest
import spacy
from conftest import train_examples
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_spert.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def gold(tmp_path_factory):
    path = tmp_path_factory.mktemp("gold") / "test.spacy"
    examples = train_examples(spacy.blank("en"))
    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(path)
    return path


def invoke(*args):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def test_evaluate_writes_the_report_next_to_its_json(model_dir, gold, tmp_path):
    scores_path, report = tmp_path / "scores.json", tmp_path / "out" / "report.html"
    result = invoke(model_dir, gold, "--output", scores_path, "--report", report, "--report-examples", "1")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())  # wasabi wraps long lines
    assert f"Saved the error analysis to {report} and {report.with_suffix('.json')}" in said
    scores = json.loads(scores_path.read_text())
    data = json.loads(report.with_suffix(".json").read_text())
    assert data["docs"] == 4 and data["spans_key"] == "sc"
    for name, prefix in (("entities", "spert_ent"), ("relations_strict", "spert_rel")):
        assert data["scores"][name]["micro"]["f"] == pytest.approx(scores[f"{prefix}_f"])
        assert data["scores"][name]["macro"]["f"] == pytest.approx(scores[f"{prefix}_macro_f"])
        assert data["scores"][name]["micro"]["support"] == {"entities": 8, "relations_strict": 5}[name]
    for kind in ("entities", "relations"):
        assert all(len(b["examples"]) <= 1 for b in data["buckets"][kind].values())
    page = report.read_text(encoding="utf8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert 'id="scores-entities"' in page and 'id="calibration-table-relations"' in page


def test_report_never_replaces_an_input(model_dir, gold, tmp_path):
    before = gold.read_bytes()
    result = invoke(model_dir, gold, "--report", gold)  # the gold file itself
    assert result.exit_code == 1 and "is the input" in result.stderr and len(result.stderr.splitlines()) == 1
    # the JSON next to the report would be a file of the pipeline
    result = invoke(model_dir, gold, "--report", model_dir / "meta.html")
    assert result.exit_code == 1 and "meta.json" in result.stderr
    assert not (model_dir / "meta.html").exists()
    result = invoke(model_dir, gold, "--report", tmp_path / "r.html", "--output", tmp_path / "r.json")
    assert result.exit_code == 1 and "must differ" in result.stderr
    result = invoke(model_dir, gold, "--report", tmp_path / "report.json")
    assert result.exit_code == 1 and "the report is HTML" in result.stderr
    assert gold.read_bytes() == before and not list(tmp_path.iterdir())
