"""Per-label thresholds of the spert component (entity_thresholds,
relation_thresholds): what they keep and drop, that scores do not change,
the fallback to the global threshold, saving and loading, and the errors."""

import json
from pathlib import Path

import pytest
import spacy
from conftest import GIVEN_ENTS, TRAIN_TEXTS, gold_ents_examples, make_nlp, train_examples
from spacy.util import fix_random_seed, make_tempdir

from spacy_spert.relations import relation_key

ENTITY_LABELS = ["Loc", "Org", "Peop"]
RELATION_LABELS = ["Live_In", "OrgBased_In", "Work_For"]


def predict(nlp):
    """Per text: entities (start, end, label, score) and relations (key, score)."""
    out = []
    for doc in nlp.pipe(TRAIN_TEXTS):
        group = doc.spans["sc"]
        ents = [(s.start, s.end, s.label_, float(score)) for s, score in zip(group, group.attrs["scores"])]
        rels = sorted((relation_key(r), r["score"]) for r in doc._.relations)
        out.append((ents, rels))
    return out


@pytest.fixture(scope="module")
def nlp(model_dir):
    """The session's overfitted pipeline (conftest's model_dir)."""
    return spacy.load(model_dir)


@pytest.fixture
def spert(nlp):
    component = nlp.get_pipe("spert")
    threshold = component.cfg["threshold"]
    yield component
    component.set_thresholds({}, {})
    component.cfg["threshold"] = threshold


def test_default_settings_are_empty(spert):
    assert spert.cfg["entity_thresholds"] == {} and spert.cfg["relation_thresholds"] == {}
    assert spert.thresholds == {
        "entities": dict.fromkeys(ENTITY_LABELS, 0.0),
        "relations": dict.fromkeys(RELATION_LABELS, 0.4),
    }
    # without per-label thresholds the model gets the global threshold itself (the unchanged path)
    assert spert._model_thresholds() == 0.4


def test_zero_entity_thresholds_keep_the_predictions(nlp, spert):
    default = predict(nlp)
    spert.set_thresholds(dict.fromkeys(ENTITY_LABELS, 0.0), dict.fromkeys(RELATION_LABELS, 0.4))
    assert predict(nlp) == default
    assert sum(len(ents) for ents, _ in default) == 8 and sum(len(rels) for _, rels in default) == 5


def test_entity_threshold_removes_only_its_label(nlp, spert):
    default = predict(nlp)
    spert.set_thresholds({"Peop": 1.0})
    assert spert.thresholds["entities"] == {"Loc": 0.0, "Org": 0.0, "Peop": 1.0}
    for (ents, rels), (old_ents, old_rels) in zip(predict(nlp), default):
        # the same spans with the same scores, but the people
        assert ents == [e for e in old_ents if e[2] != "Peop"]
        # relations whose head or tail was a person are gone with it (Work_For, Live_In)
        people = {(start, end) for start, end, label, _ in old_ents if label == "Peop"}
        assert rels == [(k, s) for k, s in old_rels if k[0:2] not in people and k[2:4] not in people]
    assert {k[-1] for _, rels in default for k, _ in rels} == {"Work_For", "Live_In", "OrgBased_In"}


def test_entity_threshold_between_scores(nlp, spert):
    """A threshold between two scores of a label keeps the higher one only."""
    default = predict(nlp)
    loc = sorted(score for ents, _ in default for *_, label, score in ents if label == "Loc")
    assert len(loc) == 3 and loc[0] < loc[1]
    spert.set_thresholds({"Loc": (loc[0] + loc[1]) / 2})
    kept = sorted(score for ents, _ in predict(nlp) for *_, label, score in ents if label == "Loc")
    assert kept == loc[1:]


def test_relation_threshold_removes_only_its_label(nlp, spert):
    default = predict(nlp)
    spert.set_thresholds(relation_thresholds={"Work_For": 1.01})
    assert spert.thresholds["relations"] == {"Live_In": 0.4, "OrgBased_In": 0.4, "Work_For": 1.01}
    got = predict(nlp)
    for (ents, rels), (old_ents, old_rels) in zip(got, default):
        assert ents == old_ents
        assert rels == [(k, s) for k, s in old_rels if k[-1] != "Work_For"]
    assert any(k[-1] == "Work_For" for _, rels in default for k, _ in rels)


def test_relation_threshold_below_global_adds_only_its_label(nlp, spert):
    """0 for one label: every pair of entities holds it, the others keep the
    global threshold; the scores of relations kept before do not change."""
    default = predict(nlp)
    spert.set_thresholds(relation_thresholds={"Live_In": 0.0})
    for (ents, rels), (_, old_rels) in zip(predict(nlp), default):
        n = len(ents)
        assert [r for r in rels if r[0][-1] != "Live_In"] == [r for r in old_rels if r[0][-1] != "Live_In"]
        assert len([r for r in rels if r[0][-1] == "Live_In"]) == n * (n - 1)
        assert set(old_rels) <= set(rels)


def test_global_threshold_is_the_fallback(nlp, spert):
    """Labels without their own threshold follow the global one."""
    spert.set_thresholds(relation_thresholds={"Work_For": 0.4})
    spert.cfg["threshold"] = 1.01
    rels = [r for _, rels in predict(nlp) for r in rels]
    assert rels and {k[-1] for k, _ in rels} == {"Work_For"}


def test_thresholds_saved_and_loaded(nlp, spert):
    spert.set_thresholds({"Loc": 0.9}, {"Work_For": 0.75})
    with make_tempdir() as d:
        nlp.to_disk(d)
        cfg = json.loads((Path(d) / "spert" / "cfg").read_text())
        assert cfg["entity_thresholds"] == {"Loc": 0.9} and cfg["relation_thresholds"] == {"Work_For": 0.75}
        loaded = spacy.load(d)
        assert loaded.get_pipe("spert").thresholds == spert.thresholds
        assert predict(loaded) == predict(nlp)
        blank = spacy.blank("en").from_config(nlp.config)
        blank.get_pipe("spert").from_bytes(spert.to_bytes())
        assert blank.get_pipe("spert").cfg["entity_thresholds"] == {"Loc": 0.9}


def test_thresholds_from_the_config(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, {"entity_thresholds": {"Org": 0.7}, "relation_thresholds": {"Live_In": 0.2}})
    nlp.initialize(lambda: train_examples(nlp))
    spert = nlp.get_pipe("spert")
    assert spert.thresholds["entities"]["Org"] == 0.7 and spert.thresholds["relations"]["Live_In"] == 0.2
    assert nlp.config["components"]["spert"]["relation_thresholds"] == {"Live_In": 0.2}


def test_unknown_label_is_an_error(nlp, spert, tiny_bert):
    with pytest.raises(
        ValueError, match=r"entity label 'Person', which is not one of its entity labels: Loc, Org, Peop"
    ):
        spert.set_thresholds({"Person": 0.5})
    assert spert.cfg["entity_thresholds"] == {}  # unchanged
    with pytest.raises(ValueError, match=r"relation label 'Works_For'.*Live_In, OrgBased_In, Work_For"):
        spert.set_thresholds(relation_thresholds={"Works_For": 0.5})
    with pytest.raises(ValueError, match=r"relation_thresholds\['Work_For'\] = nan: a threshold must be a finite"):
        spert.set_thresholds(relation_thresholds={"Work_For": float("nan")})
    # at initialize, from the config
    nlp2 = make_nlp(tiny_bert, {"relation_thresholds": {"Born_In": 0.5}})
    with pytest.raises(ValueError, match="relation label 'Born_In'"):
        nlp2.initialize(lambda: train_examples(nlp2))
    # at load, from a saved cfg
    with make_tempdir() as d:
        nlp.to_disk(d)
        cfg_path = Path(d) / "spert" / "cfg"
        cfg = json.loads(cfg_path.read_text())
        cfg["entity_thresholds"] = {"Person": 0.5}
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(ValueError, match="entity label 'Person'"):
            spacy.load(d)


def test_entity_thresholds_refused_with_given_entities(tiny_bert):
    nlp = make_nlp(tiny_bert, {**GIVEN_ENTS, "entity_thresholds": {"Org": 0.5}})
    examples = gold_ents_examples(nlp)
    with pytest.raises(ValueError, match=r"suggester gives the entities \(doc.ents\).*leave entity_thresholds empty"):
        nlp.initialize(lambda: examples)


def test_spert_mt_entity_thresholds(tiny_bert):
    """SpERT.MT: a label's entity threshold replaces theta for that label's
    spans, also below theta; at theta it changes nothing."""
    fix_random_seed(0)
    model = {
        "@architectures": "spacy-spert.SpERTMT.v1",
        "tok2vec": {"@layers": "spacy-spert.WordpieceListener.v1", "upstream": "*"},
    }
    nlp = make_nlp(tiny_bert, {"model": model, "threshold": 0.0})
    nlp.initialize(lambda: train_examples(nlp))
    spert = nlp.get_pipe("spert")
    default = predict(nlp)
    assert spert.thresholds["entities"] == dict.fromkeys(ENTITY_LABELS, 0.0)  # theta
    spert.set_thresholds(dict.fromkeys(ENTITY_LABELS, 0.0))
    assert predict(nlp) == default
    # untrained, every span's best class is Loc; theta keeps those scoring >= 0
    assert {e[2] for ents, _ in default for e in ents} == {"Loc"}
    spert.set_thresholds({"Loc": -100.0})
    lower = predict(nlp)
    for (ents, _), (old_ents, _) in zip(lower, default):
        assert set(old_ents) < set(ents)  # the same scores, more spans
        assert all(e[3] < 0 for e in set(ents) - set(old_ents))
    spert.set_thresholds({"Loc": 100.0})
    assert all(ents == [] for ents, _ in predict(nlp))
