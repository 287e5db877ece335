"""The user path: `spacy init labels`, `python -m spacy train configs/spert.cfg
--paths.train T --paths.dev D` (with SpERT's schedule fitted to T), `spacy.load`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from conftest import TRAIN_DATA, make_doc
from spacy.tokens import DocBin
from thinc.api import Config

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_init_labels_and_spacy_train_cli(tiny_bert, tmp_path):
    nlp = spacy.blank("en")
    docs = [make_doc(nlp.vocab, w, e, r) for w, e, r in TRAIN_DATA] * 4
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "train.spacy")
    DocBin(store_user_data=True, docs=docs[:4]).to_disk(tmp_path / "dev.spacy")
    config = Config().from_disk(ROOT / "configs" / "spert.cfg", interpolate=False)
    config["encoder"]["name"] = str(tiny_bert)
    config["initialize"]["components"]["spert"] = {
        "labels": {
            "@readers": "spacy.read_labels.v1",
            "path": str(tmp_path / "labels" / "spert.json"),
            "require": False,
        }
    }
    config.to_disk(tmp_path / "tiny.cfg")
    paths = ["--paths.train", str(tmp_path / "train.spacy"), "--paths.dev", str(tmp_path / "dev.spacy")]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True)

    result = run("init", "labels", str(tmp_path / "tiny.cfg"), str(tmp_path / "labels"), *paths)
    assert result.returncode == 0, result.stderr
    labels = json.loads((tmp_path / "labels" / "spert.json").read_text())
    assert labels == {"entities": ["Loc", "Org", "Peop"], "relations": ["Live_In", "OrgBased_In", "Work_For"]}

    # Peak rate 0.002: with the warmup and the linear decay, the 320 updates
    # add up to as much learning rate as a constant 0.001.
    result = run(
        "train",
        str(tmp_path / "tiny.cfg"),
        "--output",
        str(tmp_path / "out"),
        *paths,
        "--training.max_epochs",
        "40",
        "--training.eval_frequency",
        "40",
        "--training.optimizer.learn_rate.initial_rate",
        "0.002",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    # the schedule counted the training docs: 16 docs, 2 per update, 40 epochs
    assert "8 steps per epoch x 40 epochs = 320 steps, warmup 32" in " ".join(result.stdout.split())
    assert "SPERT_ENT_F" in result.stdout
    trained = spacy.load(tmp_path / "out" / "model-best")
    assert trained.pipe_names == ["transformer", "spert"]
    assert trained.get_pipe("spert").label_data == labels
    meta = json.loads((tmp_path / "out" / "model-best" / "meta.json").read_text())
    assert meta["performance"]["spert_ent_f"] > 0.5
    doc = trained("Mary Smith works for Acme Corp in Paris .")
    assert [(s.text, s.label_) for s in doc.spans["sc"]] == [
        ("Mary Smith", "Peop"),
        ("Acme Corp", "Org"),
        ("Paris", "Loc"),
    ]
