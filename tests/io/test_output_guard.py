"""No command writes its output over one of its inputs: the same path, another
path to the same file (``..``, a symbolic link, a hard link) is refused with a
one-line error before anything is read, and the input is left byte for byte
(spacy_spert/io/files.py: check_output_path)."""

import json
import os
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_spert.cli import app
from spacy_spert.io.files import check_output_path

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, path: Path, before: bytes) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "is the input" in lines[0] and "nothing was written" in lines[0]
    assert path.read_bytes() == before


def aliases(path: Path):
    """The same file through other paths: itself, via '..', a symbolic link, a hard link."""
    sym = path.with_name("sym-" + path.name)
    sym.symlink_to(path)
    hard = path.with_name("hard-" + path.name)
    os.link(path, hard)
    return [path, path.parent / ".." / path.parent.name / path.name, sym, hard]


def test_check_output_path_cases(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("{}\n")
    for alias in aliases(data):
        with pytest.raises(ValueError, match="is the input"):
            check_output_path(alias, data)
    check_output_path(tmp_path / "out.jsonl", data)  # another file
    check_output_path(tmp_path / "new.jsonl", tmp_path / "missing.jsonl")  # neither exists
    check_output_path(data, None, "s3://bucket/in.jsonl")  # skipped inputs


def test_convert_refuses_its_input(tmp_path):
    data = tmp_path / "train.json"
    data.write_text(json.dumps([{"tokens": ["Hi"], "entities": [], "relations": []}]))
    before = data.read_bytes()
    for alias in aliases(data):
        assert_refused(invoke("convert", data, alias), data, before)


def test_import_refuses_its_input(tmp_path):
    data = tmp_path / "prodigy.jsonl"
    data.write_text(json.dumps({"text": "Hi .", "answer": "reject"}) + "\n")
    before = data.read_bytes()
    for alias in aliases(data):
        assert_refused(invoke("import", "prodigy", data, alias), data, before)


def test_predict_refuses_its_input(model_dir, tmp_path):
    gold = tmp_path / "gold.spacy"
    DocBin().to_disk(gold)
    before = gold.read_bytes()
    for alias in aliases(gold):
        assert_refused(invoke("predict", model_dir, gold, alias), gold, before)


def test_render_refuses_its_input(tmp_path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"text": "Hi", "entities": [], "relations": []}) + "\n")
    before = preds.read_bytes()
    for alias in aliases(preds):
        assert_refused(invoke("render", preds, alias), preds, before)


def test_evaluate_refuses_its_gold(model_dir, tmp_path):
    gold = tmp_path / "gold.spacy"
    DocBin().to_disk(gold)
    before = gold.read_bytes()
    assert_refused(invoke("evaluate", model_dir, gold, "--output", gold), gold, before)
