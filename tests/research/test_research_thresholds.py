"""`python -m research thresholds`: global vs tuned thresholds over seeds,
on tiny pipelines (the real experiment trains MiniLM-L6 on CoNLL04)."""

import json
import shutil

import pytest
import spacy
from conftest import TRAIN_DATA, make_doc
from spacy.tokens import DocBin
from typer.testing import CliRunner

from research.cli import app
from research.thresholds import TRAIN_COMMAND, mean_std

runner = CliRunner()


def write_corpus(path, drop_label=None) -> None:
    """TRAIN_DATA as a .spacy corpus, without the entities of ``drop_label``
    (and their relations)."""
    vocab = spacy.blank("en").vocab
    docs = []
    for words, ents, rels in TRAIN_DATA:
        keep = [i for i, (_, _, label) in enumerate(ents) if label != drop_label]
        index = {old: new for new, old in enumerate(keep)}
        kept_rels = [(index[h], index[t], label) for h, t, label in rels if h in index and t in index]
        docs.append(make_doc(vocab, words, [ents[i] for i in keep], kept_rels))
    DocBin(docs=docs, store_user_data=True).to_disk(path)


@pytest.fixture
def seed_models(model_dir, tmp_path):
    """Two "seeds": the overfitted pipeline, and the same with a global
    threshold of 0 (every pair holds every relation)."""
    for seed in (0, 1):
        shutil.copytree(model_dir, tmp_path / f"run-seed{seed}" / "model-best")
    cfg_path = tmp_path / "run-seed1" / "model-best" / "spert" / "cfg"
    cfg = json.loads(cfg_path.read_text())
    cfg["threshold"] = 0.0
    cfg_path.write_text(json.dumps(cfg))
    return str(tmp_path / "run-seed{seed}" / "model-best")


def test_thresholds_global_vs_tuned(seed_models, tmp_path):
    """Dev lacks the Loc entities, test has them: tuning on dev drops Loc,
    which costs on test; seed 1's relations gain from tuning."""
    dev, test = tmp_path / "dev.spacy", tmp_path / "test.spacy"
    write_corpus(dev, drop_label="Loc")
    write_corpus(test)
    results = tmp_path / "results" / "t-thresholds.json"
    args = [seed_models, "--dev", dev, "--test", test, "--results", results, "--seeds", "0,1", "--min-support", "0"]
    result = runner.invoke(app, ["thresholds", *map(str, args)])
    assert result.exit_code == 0, result.output
    out = json.loads(results.read_text())
    assert out["seeds"] == [0, 1] and out["train_command"] == TRAIN_COMMAND
    assert out["command"].startswith("python")  # sys.argv of this process (pytest's here)
    seed0, seed1 = out["per_seed"]["0"], out["per_seed"]["1"]
    assert set(seed0["entity_thresholds"]) == {"Loc"} and seed0["relation_thresholds"] == {}
    assert set(seed1["relation_thresholds"]) == {"Live_In", "OrgBased_In", "Work_For"}
    # seed 0: perfect with the global threshold; without Loc 5 of 8 entities
    # (10/13) and the 2 Work_For of 5 relations (4/7)
    assert seed0["scores"]["global"]["test"]["ner_micro"]["f"] == 100.0
    assert seed0["scores"]["tuned"]["test"]["ner_micro"]["f"] == pytest.approx(100 * 10 / 13)
    assert seed0["scores"]["tuned"]["test"]["rel_strict_micro"]["f"] == pytest.approx(100 * 4 / 7)
    assert seed0["scores"]["tuned"]["dev"]["ner_micro"]["f"] == 100.0
    # the tuned dev scores are the ones tuning reported
    for run in (seed0, seed1):
        tuned_dev = run["scores"]["tuned"]["dev"]
        assert tuned_dev["ner_micro"]["f"] == pytest.approx(100 * run["tuning"]["entities"]["micro_f_after"])
        assert tuned_dev["rel_strict_micro"]["f"] == pytest.approx(100 * run["tuning"]["relations"]["micro_f_after"])
    rel = [run["scores"][s]["test"]["rel_strict_micro"]["f"] for run in (seed0, seed1) for s in ("global", "tuned")]
    assert rel[2] < 50 < rel[3]  # seed 1: 0 globally, tuned per label
    assert out["global"]["test"]["rel_strict_micro"]["f"] == mean_std([rel[0], rel[2]])
    assert out["delta"]["test"]["rel_strict_micro"]["f"] == mean_std([rel[1] - rel[0], rel[3] - rel[2]])
    md = results.with_suffix(".md").read_text()
    assert "trained on train (not train+dev) and model-best was selected on dev" in md
    assert f"`{TRAIN_COMMAND}`" in md and "| test | RE strict micro F1 |" in md
    assert "| 0 | Loc 0." in md  # the tuned thresholds


def test_thresholds_needs_every_pipeline(seed_models, tmp_path):
    dev = tmp_path / "dev.spacy"
    write_corpus(dev)
    args = [seed_models, "--dev", dev, "--test", dev, "--results", tmp_path / "r.json", "--seeds", "0,1,2"]
    result = runner.invoke(app, ["thresholds", *map(str, args)])
    assert result.exit_code == 1 and "no such pipeline: " in result.stderr and "run-seed2" in result.stderr
    assert not (tmp_path / "r.json").exists()
