"""``python -m research memory``: peak memory per case, on the session's
small overfitted pipeline."""

import json

import pytest
import spacy
from conftest import train_examples
from spacy.tokens import DocBin

from research.memory import case_worker, markdown, run_memory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("memory") / "c.spacy"
    docs = [eg.reference for eg in train_examples(spacy.blank("en"))]
    DocBin(docs=docs * 8, store_user_data=True).to_disk(path)
    return path


def test_memory_cases_measure_in_this_process(model_dir, corpus):
    """One inference batch, a long doc and training steps under a budget:
    tokens as asked, a peak at least what was there after loading."""
    batch = case_worker(model_dir, corpus, "batch", -1, batch_size=16, long_tokens=0)
    assert batch["docs"] == 16 and batch["wordpieces"] > batch["tokens"] > 100
    long = case_worker(model_dir, corpus, "long", -1, batch_size=16, long_tokens=500)
    assert long["docs"] == 1 and long["tokens"] == 500
    train = case_worker(model_dir, corpus, "train_25", -1, batch_size=16, long_tokens=0, train=corpus, steps=3)
    assert train["steps"] == 3 and 0 < train["tokens"] <= 25
    for row in (batch, long, train):
        assert row["peak_mb"] >= row["loaded_mb"] > 100 and row["delta_mb"] == row["peak_mb"] - row["loaded_mb"]


@pytest.mark.slow
def test_memory_command_writes_results(model_dir, corpus, tmp_path):
    """Every case in a fresh process, the JSON and its table (~40 s)."""
    results = tmp_path / "memory.json"
    out = run_memory(model_dir, corpus, results, train=corpus, batch_size=8, long_tokens=300, budgets=(20, 40), steps=2)
    data = json.loads(results.read_text())
    assert data == json.loads(json.dumps(out))
    assert [r["case"] for r in data["cases"]] == ["batch", "long", "long_transformer", "train_20", "train_40"]
    assert data["machine"]["device"] == "CPU" and "torch" in data["versions"]
    table = results.with_suffix(".md").read_text()
    assert table == markdown(data) and "| train_40 | " in table
