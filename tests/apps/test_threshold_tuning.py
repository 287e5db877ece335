"""tune-thresholds as a library: the search on hand-made scores with a known
optimum (apps/threshold_search.py), and tuning a trained pipeline on dev
data, whose reported F1 must be what the tuned pipeline then scores
(apps/thresholds.py)."""

import itertools
import json
import shutil

import numpy
import pytest
import spacy
from conftest import TRAIN_DATA, make_doc
from spacy.training import Example

from spacy_spert.apps.threshold_search import (
    LabelScores,
    best_threshold,
    micro_f1,
    number_above,
    number_between,
    search_thresholds,
)
from spacy_spert.apps.thresholds import run_pipeline, tune_pipeline, tune_thresholds
from spacy_spert.pipeline.scorer import score_spert

# The search --------------------------------------------------------------------


def brute_force(labels, floor, tuned):
    """The best micro F1 over every combination of keep-sets of the tuned labels."""
    options = {
        label: [floor, *(float(s) for s in numpy.unique(item.scores)), float(item.scores.max()) + 1]
        for label, item in labels.items()
    }
    best = 0.0
    for combo in itertools.product(*(options[label] for label in tuned)):
        thresholds = dict.fromkeys(labels, 0.4) | dict(zip(tuned, combo))
        best = max(best, micro_f1(labels, thresholds))
    return best


def test_one_label_known_optimum():
    # F1 by how many of the top predictions are kept (4 gold):
    # 1: 2/5, 2: 4/6, 3: 4/7, 4: 6/8 (the best), 5: 6/9, 6: 6/10, 7: 6/11
    item = LabelScores.make([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], [1, 1, 0, 1, 0, 0, 0], support=4)
    threshold = search_thresholds({"A": item}, {"A": 0.4}, {"A": 0.4}, floor=0.05, min_support=1)["A"]
    assert threshold == 0.55  # strictly between the kept 0.6 and the dropped 0.5, and short
    assert item.counts(threshold) == (4, 3)
    assert micro_f1({"A": item}, {"A": threshold}) == pytest.approx(0.75)


def test_keeps_the_current_threshold_on_a_tie():
    item = LabelScores.make([0.9, 0.2], [1, 0], support=1)
    # 0.3 and 0.5 keep the same predictions: nothing changes
    assert best_threshold(item, 0.3, 0.5, 0.05, 0, 0, 1) == 0.3
    # a worse current threshold: the fallback, where it is among the best
    assert best_threshold(item, 0.1, 0.5, 0.05, 0, 0, 1) == 0.5


def test_drops_a_label_whose_predictions_are_all_wrong():
    wrong = LabelScores.make([0.97, 0.6], [0, 0], support=0)
    right = LabelScores.make([0.9], [1], support=1)
    thresholds = search_thresholds(
        {"A": right, "B": wrong}, {"A": 0.4, "B": 0.4}, {"A": 0.4, "B": 0.4}, floor=0.05, min_support=0
    )
    assert thresholds == {"A": 0.4, "B": 1.0}
    assert wrong.counts(1.0) == (0, 0)


def test_min_support_keeps_the_fallback():
    # keeping only 0.9: 2/4; both: 2/5
    labels = {"B": LabelScores.make([0.9, 0.6], [1, 0], support=3)}
    assert search_thresholds(labels, {"B": 0.5}, {"B": 0.4}, floor=0.05, min_support=3) == {"B": 0.8}
    # too few gold items: the fallback, also where another threshold was set
    assert search_thresholds(labels, {"B": 0.7}, {"B": 0.4}, floor=0.05, min_support=4) == {"B": 0.4}


@pytest.mark.parametrize("seed", range(5))
def test_search_matches_brute_force(seed):
    """Hand-made scores of three labels (one under min_support): the search
    reaches the best micro F1 that any thresholds give (on these data:
    coordinate ascent need not in general), never lowers it, and every
    threshold is >= the floor."""
    rng = numpy.random.default_rng(seed)
    labels = {}
    for label, n in (("A", 7), ("B", 6), ("C", 3)):
        scores = rng.uniform(0.05, 1.0, n).round(2)
        correct = rng.uniform(size=n) < scores  # higher scores are right more often
        labels[label] = LabelScores.make(scores, correct, support=int(correct.sum()) + int(rng.integers(0, 3)))
    start = dict.fromkeys(labels, 0.4)
    tuned = [label for label, item in labels.items() if item.support >= 3]
    thresholds = search_thresholds(labels, start, start, floor=0.05, min_support=3)
    assert all(value >= 0.05 for value in thresholds.values())
    assert {label: thresholds[label] for label in labels if label not in tuned} == {
        label: 0.4 for label in labels if label not in tuned
    }
    got = micro_f1(labels, thresholds)
    assert got >= micro_f1(labels, start)
    assert got == pytest.approx(brute_force(labels, 0.05, tuned))


def test_numbers_between_and_above_scores():
    assert number_between(0.2, 0.8, 0.05) == 0.5
    assert number_between(0.43, 0.44, 0.05) == 0.435
    assert number_between(None, 0.3, 0.05) == 0.2  # keep all: in [floor, 0.3)
    # adjacent float32 values: no decimal between, the kept score itself
    high = float(numpy.nextafter(numpy.float32(0.5), numpy.float32(1)))
    assert number_between(0.5, high, 0.05) == high
    assert number_above(0.873) == 0.9
    assert number_above(1.0) == 1.1
    assert numpy.float32(number_above(0.9999999)) > numpy.float32(0.9999999)


# Tuning a pipeline ---------------------------------------------------------------


def dev_examples(nlp, drop_label=None):
    """The TRAIN_DATA sentences as dev data, without the entities of
    ``drop_label`` (and their relations): the overfitted model's entities of
    that label are then all wrong."""
    examples = []
    for words, ents, rels in TRAIN_DATA:
        keep = [i for i, (_, _, label) in enumerate(ents) if label != drop_label]
        index = {old: new for new, old in enumerate(keep)}
        kept_rels = [(index[h], index[t], label) for h, t, label in rels if h in index and t in index]
        reference = make_doc(nlp.vocab, words, [ents[i] for i in keep], kept_rels)
        examples.append(Example(nlp.make_doc(" ".join(words)), reference))
    return examples


def real_scores(nlp, examples):
    scores = score_spert(run_pipeline(nlp, examples))
    return scores["spert_ent_f"], scores["spert_rel_f"]


@pytest.fixture
def nlp(model_dir):
    return spacy.load(model_dir)


def test_tuning_drops_an_entity_label_and_its_relations(nlp):
    examples = dev_examples(nlp, drop_label="Loc")
    spert = nlp.get_pipe("spert")
    before = real_scores(nlp, examples)
    report = tune_thresholds(nlp, examples, min_support=0)
    assert spert.cfg["entity_thresholds"] == {}  # the pipeline is left as it was
    loc_scores = [float(s) for doc in nlp.pipe(eg.text for eg in examples) for s, span in
                  zip(doc.spans["sc"].attrs["scores"], doc.spans["sc"]) if span.label_ == "Loc"]  # fmt: skip
    assert len(loc_scores) == 3 and report["entity_thresholds"]["Loc"] > max(loc_scores)
    assert set(report["entity_thresholds"]) == {"Loc"} and report["relation_thresholds"] == {}
    assert report["entities"]["labels"]["Loc"] | {"threshold_after": None} == {
        "support": 0, "tuned": True, "threshold_before": 0.0, "threshold_after": None,
        "p_before": 0.0, "r_before": 0.0, "f_before": 0.0, "p_after": 0.0, "r_after": 0.0, "f_after": 0.0,
    }  # fmt: skip
    # 5 right, 3 wrong of 5 gold: 10/13; then 1.0. Relations: the 2 Work_For
    # and 3 of Loc, 2 gold: 4/7; without Loc's entities, 1.0.
    assert (report["entities"]["micro_f_before"], report["relations"]["micro_f_before"]) == pytest.approx(before)
    assert before == pytest.approx((10 / 13, 4 / 7))
    assert (report["entities"]["micro_f_after"], report["relations"]["micro_f_after"]) == (1.0, 1.0)
    spert.set_thresholds(report["entity_thresholds"], report["relation_thresholds"])
    assert real_scores(nlp, examples) == (1.0, 1.0)


def test_tuning_relations_after_a_bad_global_threshold(nlp):
    """With a global threshold of 0 every pair holds every relation; tuning
    finds per-label thresholds, and the tuned pipeline scores what the report says."""
    examples = dev_examples(nlp)
    spert = nlp.get_pipe("spert")
    spert.cfg["threshold"] = 0.0
    report = tune_thresholds(nlp, examples, min_support=1)
    assert report["floor"] == {"entities": 0.0, "relations": 0.0}
    assert set(report["relation_thresholds"]) == {"Live_In", "OrgBased_In", "Work_For"}
    assert report["entity_thresholds"] == {}
    before, after = report["relations"]["micro_f_before"], report["relations"]["micro_f_after"]
    assert before < 0.5 and after == 1.0
    assert real_scores(nlp, examples)[1] == pytest.approx(before)
    spert.set_thresholds(report["entity_thresholds"], report["relation_thresholds"])
    assert real_scores(nlp, examples) == (1.0, 1.0)


def test_min_support_leaves_labels_untuned(nlp):
    report = tune_thresholds(nlp, dev_examples(nlp, drop_label="Loc"), min_support=1)
    assert report["entity_thresholds"] == {} and not report["entities"]["labels"]["Loc"]["tuned"]
    assert report["entities"]["micro_f_after"] == report["entities"]["micro_f_before"]


def test_tune_pipeline_writes_a_loadable_pipeline(nlp, model_dir, tmp_path):
    from spacy.tokens import DocBin

    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in dev_examples(nlp, "Loc")], store_user_data=True).to_disk(dev)
    out = tmp_path / "tuned"
    report = tune_pipeline(model_dir, dev, out, min_support=0, report_json=tmp_path / "r" / "report.json")
    assert json.loads((out / "thresholds.json").read_text()) == report
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == report
    tuned = spacy.load(out)
    assert tuned.get_pipe("spert").cfg["entity_thresholds"] == report["entity_thresholds"] != {}
    assert tuned.config["components"]["spert"]["entity_thresholds"] == report["entity_thresholds"]
    assert spacy.load(model_dir).get_pipe("spert").cfg["entity_thresholds"] == {}  # MODEL unchanged
    # a rerun replaces the pipeline it wrote
    again = tune_pipeline(out, dev, tmp_path / "tuned2", min_support=0)
    assert again["entity_thresholds"] == report["entity_thresholds"]
    tune_pipeline(model_dir, dev, out, min_support=5)
    assert spacy.load(out).get_pipe("spert").cfg["entity_thresholds"] == {}
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_tune_pipeline_never_writes_over_its_inputs(model_dir, tmp_path):
    from spacy.tokens import DocBin

    model = tmp_path / "models" / "model"
    shutil.copytree(model_dir, model)
    dev = tmp_path / "dev.spacy"
    DocBin(docs=[eg.reference for eg in dev_examples(spacy.blank("en"))], store_user_data=True).to_disk(dev)
    for output, message in [
        (model, "is the input"),
        (tmp_path / "models", "lie one in the other"),
        (model / "tuned", "lie one in the other"),
        (tmp_path, "lie one in the other"),
        (dev, "is the input"),
    ]:
        with pytest.raises(ValueError, match=message):
            tune_pipeline(model, dev, output)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds files and no pipeline"):
        tune_pipeline(model, dev, tmp_path / "notes")
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
