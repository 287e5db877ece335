"""`tune-thresholds` end to end: a tiny trained pipeline tuned on dev data,
the tuned pipeline written and loadable, the table printed, one-line errors."""

import json

import spacy
from conftest import TRAIN_DATA, make_doc
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_spert.cli import app

runner = CliRunner()


def write_dev(path, vocab) -> None:
    """TRAIN_DATA without its Loc entities (and their relations): the
    overfitted model's Loc entities are all wrong there."""
    docs = []
    for words, ents, rels in TRAIN_DATA:
        keep = [i for i, (_, _, label) in enumerate(ents) if label != "Loc"]
        index = {old: new for new, old in enumerate(keep)}
        docs.append(
            make_doc(
                vocab,
                words,
                [ents[i] for i in keep],
                [(index[h], index[t], label) for h, t, label in rels if h in index and t in index],
            )
        )
    DocBin(docs=docs, store_user_data=True).to_disk(path)


def test_tune_thresholds_writes_the_tuned_pipeline(model_dir, tmp_path):
    dev = tmp_path / "dev.spacy"
    write_dev(dev, spacy.blank("en").vocab)
    out = tmp_path / "tuned"
    result = runner.invoke(
        app, ["tune-thresholds", str(model_dir), str(dev), "--output", str(out), "--min-support", "0"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "thresholds.json").read_text())
    nlp = spacy.load(out)
    assert nlp.get_pipe("spert").cfg["entity_thresholds"] == report["entity_thresholds"]
    assert set(report["entity_thresholds"]) == {"Loc"}
    lines = result.stdout.splitlines()
    loc = next(line for line in lines if line.startswith("Loc "))
    # label, support, threshold before and after, F1 before and after
    assert loc.split() == ["Loc", "0", "0", f"{report['entity_thresholds']['Loc']:.4g}", "0.00", "0.00"]
    micro = [line.split() for line in lines if line.startswith("micro ")]
    assert micro == [["micro", "76.92", "100.00"], ["micro", "57.14", "100.00"]]
    # the tuned pipeline scores on dev what the table says
    scores = nlp.evaluate(_examples(nlp, dev))
    assert round(100 * scores["spert_ent_f"], 2) == 100.0 and round(100 * scores["spert_rel_f"], 2) == 100.0


def _examples(nlp, path):
    from spacy.training import Corpus

    return list(Corpus(str(path))(nlp))


def test_tune_thresholds_refuses_to_write_over_the_model(model_dir, tmp_path):
    dev = tmp_path / "dev.spacy"
    write_dev(dev, spacy.blank("en").vocab)
    result = runner.invoke(app, ["tune-thresholds", str(model_dir), str(dev), "--output", str(model_dir)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the output ") and "nothing was written" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = runner.invoke(
        app, ["tune-thresholds", str(model_dir), str(tmp_path / "nope.spacy"), "-o", str(tmp_path / "t")]
    )
    assert result.exit_code == 1 and "nope.spacy: no such dev corpus" in result.stderr
    assert not (tmp_path / "t").exists()
