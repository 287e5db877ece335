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


def test_check_output_path_folders(tmp_path):
    """A folder input stands for the files read in it: with read_suffixes,
    any such file inside (existing or not: a rerun would read it) and a hard
    link elsewhere to one; without, every existing file (a pipeline)."""
    texts = tmp_path / "texts"
    (texts / "sub").mkdir(parents=True)
    (texts / "sub" / "a.txt").write_text("Hi")
    for output in [texts / "sub" / "a.txt", texts / "new.txt", tmp_path / "texts" / ".." / "texts" / "b.txt"]:
        with pytest.raises(ValueError, match="choose another output path, nothing was written"):
            check_output_path(output, texts, read_suffixes=(".txt",))
    os.link(texts / "sub" / "a.txt", tmp_path / "hard.jsonl")
    with pytest.raises(ValueError, match=r"is the input .*a\.txt \(the same file\), in the input folder"):
        check_output_path(tmp_path / "hard.jsonl", texts, read_suffixes=(".txt",))
    check_output_path(texts / "preds.jsonl", texts, read_suffixes=(".txt",))  # not read there
    model = tmp_path / "model"
    model.mkdir()
    (model / "meta.json").write_text("{}")
    with pytest.raises(ValueError, match=r"meta\.json \(the same file\), in the input folder"):
        check_output_path(model / "meta.json", model)
    check_output_path(model / "preds.jsonl", model)  # a new file beside the pipeline's


def test_commands_refuse_a_file_of_an_input_folder(model_dir, tmp_path):
    """predict (local and Ray), render --model, import brat and evaluate
    --output over a file they read in an input folder: refused, untouched."""
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("Anna Lee works for Acme .")
    before = (texts / "a.txt").read_bytes()
    assert_refused(invoke("predict", model_dir, texts, texts / "a.txt"), texts / "a.txt", before)
    (texts / "b.jsonl").write_text('{"text": "Anna Lee ."}\n')
    lines = (texts / "b.jsonl").read_bytes()
    assert_refused(invoke("predict", model_dir, texts, texts / "b.jsonl", "--engine", "ray"), texts / "b.jsonl", lines)
    assert_refused(invoke("render", texts, texts / "a.txt", "--model", model_dir), texts / "a.txt", before)
    brat = tmp_path / "brat"
    brat.mkdir()
    (brat / "d.txt").write_text("Anna Lee .")
    (brat / "d.ann").write_text("T1\tPeop 0 8\tAnna Lee\n")
    ann = (brat / "d.ann").read_bytes()
    assert_refused(invoke("import", "brat", brat, brat / "d.ann"), brat / "d.ann", ann)
    meta = (model_dir / "meta.json").read_bytes()
    gold = tmp_path / "gold.spacy"
    DocBin().to_disk(gold)
    assert_refused(
        invoke("evaluate", model_dir, gold, "--output", model_dir / "meta.json"), model_dir / "meta.json", meta
    )
    assert_refused(invoke("predict", model_dir, gold, model_dir / "meta.json"), model_dir / "meta.json", meta)
