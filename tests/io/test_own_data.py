"""The README's "Your own data" walk-through on its sample corpus
(assets/own_data: a Label Studio export of demo sentences): import -> train
-> predict, with the README's commands (the tiny random BERT stands in for
the encoder, and training is one short epoch)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

import spacy_spert  # noqa: F401
from spacy_spert.io.importers import import_file

REPO_ROOT = Path(__file__).resolve().parents[2]
OWN = REPO_ROOT / "assets" / "own_data"


def test_sample_corpus_imports_completely(tmp_path):
    """Every annotated entity and relation of the export arrives; the one
    entity that ends inside a token ("Acme Corp" of "Corp.") is expanded and
    reported."""
    tasks = json.loads((OWN / "train.json").read_text(encoding="utf8"))
    n_ents = sum(1 for t in tasks for r in t["annotations"][0]["result"] if r["type"] == "labels")
    n_rels = sum(1 for t in tasks for r in t["annotations"][0]["result"] if r["type"] == "relation")
    report = import_file("label-studio", OWN / "train.json", tmp_path / "train.spacy")
    docs = list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("en").vocab))
    assert len(docs) == len(tasks) == 80
    assert sum(len(d.spans["sc"]) for d in docs) == n_ents
    assert sum(len(d._.relations) for d in docs) == n_rels
    assert (report.docs, report.entities, report.relations) == (80, n_ents, n_rels)
    assert report.expanded == 1 and "'Acme Corp' -> 'Acme Corp.'" in report.examples[0].replace('"', "'")
    for doc, task in zip(docs, tasks):
        labels = [r["value"]["labels"][0] for r in task["annotations"][0]["result"] if r["type"] == "labels"]
        assert [s.label_ for s in doc.spans["sc"]] == labels


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_walkthrough_import_train_predict(tiny_bert, tmp_path):
    run("-m", "spacy_spert", "import", "label-studio", str(OWN / "train.json"), "corpus/own/train.spacy", cwd=tmp_path)
    run("-m", "spacy_spert", "import", "label-studio", str(OWN / "dev.json"), "corpus/own/dev.spacy", cwd=tmp_path)
    run(
        "-m",
        "spacy",
        "train",
        str(REPO_ROOT / "configs" / "spert.cfg"),
        "--output",
        "training/own",
        "--paths.train",
        "corpus/own/train.spacy",
        "--paths.dev",
        "corpus/own/dev.spacy",
        "--encoder.name",
        str(tiny_bert),
        "--training.max_epochs",
        "1",
        "--training.batcher.size",
        "8",
        cwd=tmp_path,
    )
    run(
        "-m",
        "spacy_spert",
        "predict",
        "training/own/model-last",
        str(OWN / "texts.jsonl"),
        "predictions.jsonl",
        cwd=tmp_path,
    )
    inputs = [json.loads(line) for line in (OWN / "texts.jsonl").read_text(encoding="utf8").splitlines()]
    outputs = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text(encoding="utf8").splitlines()]
    assert [(o["id"], o["text"]) for o in outputs] == [(i["id"], i["text"]) for i in inputs]
    assert all(isinstance(o["entities"], list) and isinstance(o["relations"], list) for o in outputs)
