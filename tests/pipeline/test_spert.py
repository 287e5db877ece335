"""Behaviour of the spert component: learning, output, serialization, edge cases."""

import json
import pickle

import numpy
import pytest
import spacy
import torch
from conftest import (
    TRAIN_DATA,
    TRAIN_TEXTS,
    doc_annotations,
    gold_annotations,
    head_of,
    make_doc,
    make_nlp,
    overfit,
    train_examples,
    train_step,
)
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import fix_random_seed, make_tempdir

from spacy_spert import get_relation_spans
from spacy_spert.relations import relation_key


def predictions(doc):
    """Entities and relations of a doc as comparable plain values."""
    group = doc.spans["sc"]
    ents = [(s.start, s.end, s.label_) for s in group]
    rels = sorted(relation_key(r) for r in doc._.relations)
    return ents, rels


@pytest.fixture(scope="module")
def trained_nlp(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    overfit(nlp)
    return nlp


def test_overfit_evaluate_is_perfect(trained_nlp):
    scores = trained_nlp.evaluate(train_examples(trained_nlp))
    for key in ("spert_ent_f", "spert_ent_macro_f", "spert_rel_f", "spert_rel_macro_f", "spert_rel_bound_f"):
        assert scores[key] == 1.0, (key, scores[key])


@pytest.mark.parametrize("index", range(len(TRAIN_DATA)))
def test_overfit_predicts_gold_exactly(trained_nlp, index):
    words, entities, relations = TRAIN_DATA[index]
    doc = trained_nlp(" ".join(words))
    ents, rels = doc_annotations(doc)
    assert (ents, rels) == gold_annotations(entities, relations)
    scores = doc.spans["sc"].attrs["scores"]
    assert len(scores) == len(ents)
    assert all(0.5 < s <= 1.0 for s in scores)
    for rel in doc._.relations:
        assert set(rel) >= {"head_start", "head_end", "tail_start", "tail_end", "label", "score"}
        assert isinstance(rel["score"], float) and 0.4 <= rel["score"] <= 1.0


def test_relation_spans_helper(trained_nlp):
    doc = trained_nlp(TRAIN_TEXTS[0])
    views = get_relation_spans(doc)
    assert {(v.head.text, v.head.label_, v.label, v.tail.text, v.tail.label_) for v in views} == {
        ("Mary Smith", "Peop", "Work_For", "Acme Corp", "Org"),
        ("Acme Corp", "Org", "OrgBased_In", "Paris", "Loc"),
    }
    assert all(v.head in list(doc.spans["sc"]) for v in views)


def test_transformer_is_finetuned(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    examples = train_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    trf = next(s for node in nlp.get_pipe("transformer").model.walk() for s in node.shims)._model
    before = {k: v.detach().clone() for k, v in trf.named_parameters()}
    train_step(nlp, examples, optimizer)
    changed = [k for k, v in trf.named_parameters() if not bool((v.detach() == before[k]).all())]
    assert len(changed) > len(before) // 2


def test_save_load_same_predictions(trained_nlp):
    expected = [(predictions(d), d.spans["sc"].attrs["scores"].tolist()) for d in trained_nlp.pipe(TRAIN_TEXTS)]
    with make_tempdir() as tmp:
        trained_nlp.to_disk(tmp)
        nlp2 = spacy.load(tmp)
    assert nlp2.get_pipe("spert").label_data == trained_nlp.get_pipe("spert").label_data
    got = [(predictions(d), d.spans["sc"].attrs["scores"].tolist()) for d in nlp2.pipe(TRAIN_TEXTS)]
    assert got == expected


def test_to_bytes_from_bytes(trained_nlp, tiny_bert):
    expected = [predictions(d) for d in trained_nlp.pipe(TRAIN_TEXTS)]
    nlp2 = make_nlp(tiny_bert)
    nlp2.from_bytes(trained_nlp.to_bytes())
    assert [predictions(d) for d in nlp2.pipe(TRAIN_TEXTS)] == expected


def test_doc_serialization_keeps_relations(trained_nlp):
    docs = list(trained_nlp.pipe(TRAIN_TEXTS))
    expected = [(predictions(d), d._.relations) for d in docs]
    # DocBin with user data
    docbin = DocBin(store_user_data=True, docs=docs)
    loaded = list(DocBin().from_bytes(docbin.to_bytes()).get_docs(trained_nlp.vocab))
    assert [predictions(d) for d in loaded] == [e[0] for e in expected]
    assert [[dict(r) for r in d._.relations] for d in loaded] == [e[1] for e in expected]
    assert [d.spans["sc"].attrs["scores"].tolist() for d in loaded] == [
        d.spans["sc"].attrs["scores"].tolist() for d in docs
    ]
    # Doc.to_bytes
    doc2 = Doc(trained_nlp.vocab).from_bytes(docs[0].to_bytes())
    assert predictions(doc2) == expected[0][0]
    # Doc.to_json is JSON-safe
    data = docs[0].to_json(underscore=["relations"])
    assert json.loads(json.dumps(data))["_"]["relations"] == expected[0][1]
    # get_relation_spans reads tuples (as DocBin gives them) too
    assert len(get_relation_spans(loaded[0])) == len(expected[0][1])


def test_multiprocessing_same_output(trained_nlp):
    single = [(predictions(d), d._.relations) for d in trained_nlp.pipe(TRAIN_TEXTS, n_process=1)]
    multi = [(predictions(d), d._.relations) for d in trained_nlp.pipe(TRAIN_TEXTS, n_process=2, batch_size=2)]
    assert multi == single


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "Paris", "Paris .", " Mary Smith  works\n\nfor Acme Corp . "])
def test_edge_case_docs(trained_nlp, text):
    doc = trained_nlp(text)
    assert "sc" in doc.spans
    for span in doc.spans["sc"]:
        assert not span[0].is_space and not span[-1].is_space
    for rel in doc._.relations:
        assert 0 <= rel["head_start"] < rel["head_end"] <= len(doc)
    docs = list(trained_nlp.pipe([text, TRAIN_TEXTS[0], text]))
    assert predictions(docs[1]) == predictions(trained_nlp(TRAIN_TEXTS[0]))


def test_edge_case_training_batches(tiny_bert):
    """Empty docs, whitespace docs, 1-token docs, docs with entities but no
    relations, and batches without any relation or without some labels."""
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    examples = train_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    v = nlp.vocab
    odd = [
        make_doc(v, [], [], []),
        make_doc(v, ["Paris"], [(0, 1, "Loc")], []),
        make_doc(v, ["John", "Doe", "."], [(0, 2, "Peop")], []),
        make_doc(v, ["The", "weather"], [], []),
    ]
    odd_examples = [Example(nlp.make_doc(d.text), d) for d in odd]
    for batch in ([odd_examples[0]], odd_examples, odd_examples[1:3], [odd_examples[0], examples[1]]):
        losses = train_step(nlp, batch, optimizer)
        assert numpy.isfinite(losses.get("spert", 0.0))
    ws = Example(nlp.make_doc("   "), nlp.make_doc("   "))
    losses = train_step(nlp, [ws], optimizer)
    assert numpy.isfinite(losses["spert"])


def test_long_sentence_inference_bounded(trained_nlp, monkeypatch):
    """A 120-token sentence where every candidate span is kept as an entity:
    by default relation pairs are formed among the 60 best spans; with the
    bound lifted all ~1.3M ordered pairs are classified, in chunks, without
    running out of memory."""
    import spacy_spert.models.architectures

    spert = trained_nlp.get_pipe("spert")
    objective = spert.model.attrs["objective"]
    head = head_of(trained_nlp)
    words = ((TRAIN_TEXTS[0] + " " + TRAIN_TEXTS[1]).split() * 8)[:120]
    doc = trained_nlp.get_pipe("transformer")(trained_nlp.make_doc(" ".join(words)))
    outputs = []  # the head's output (HeadPredictions) per call
    decode = spacy_spert.models.architectures._decode
    monkeypatch.setattr(
        spacy_spert.models.architectures,
        "_decode",
        lambda obj, t, out, **kw: outputs.append(out) or decode(obj, t, out, **kw),
    )
    decode_entities = objective.decode_entities  # every span an entity, scores as they are
    monkeypatch.setattr(
        objective,
        "decode_entities",
        lambda logits, threshold: (numpy.ones(len(logits), dtype="int64"), decode_entities(logits, threshold)[1]),
    )
    candidates, _ = spert.predict([doc])
    n_spans = len(candidates.starts)
    assert n_spans == sum(min(10, 120 - i) for i in range(120))
    out = outputs[-1]
    assert out.relation_logits.shape[0] == 60 * 59
    scores = torch.softmax(out.entity_logits, dim=1).max(dim=1).values
    chosen = numpy.unique(out.pair_heads)
    assert len(chosen) == 60
    assert scores[chosen].min() >= torch.topk(scores, 60).values.min()
    monkeypatch.setattr(head, "max_pair_entities_per_token", 100.0)
    spert.predict([doc])
    out = outputs[-1]
    assert out.relation_logits.shape[0] == n_spans * (n_spans - 1)
    pairs = set(zip(out.pair_heads.tolist(), out.pair_tails.tolist()))
    assert len(pairs) == n_spans * (n_spans - 1)


def test_threshold_controls_relations(trained_nlp):
    spert = trained_nlp.get_pipe("spert")
    old = spert.cfg["threshold"]
    try:
        spert.cfg["threshold"] = 1.01
        assert trained_nlp(TRAIN_TEXTS[0])._.relations == []
        spert.cfg["threshold"] = 0.0
        doc = trained_nlp(TRAIN_TEXTS[0])
        n = len(doc.spans["sc"])
        assert len(doc._.relations) == n * (n - 1) * len(spert.relation_labels)
    finally:
        spert.cfg["threshold"] = old


def test_set_ents(trained_nlp):
    spert = trained_nlp.get_pipe("spert")
    spert.cfg["set_ents"] = True
    try:
        doc = trained_nlp(TRAIN_TEXTS[0])
    finally:
        spert.cfg["set_ents"] = False
    assert [(e.text, e.label_) for e in doc.ents] == [("Mary Smith", "Peop"), ("Acme Corp", "Org"), ("Paris", "Loc")]


def test_symmetric_relations_are_canonical(tiny_bert):
    """A symmetric relation given right-to-left in the gold data is predicted
    left-to-right, once."""
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, {"symmetric_relations": ["Conj"]})
    v = nlp.vocab
    data = [
        (["Paris", "and", "London", "."], [(0, 1, "Loc"), (2, 3, "Loc")], [(1, 0, "Conj")]),
        (["Berlin", "and", "Paris", "."], [(0, 1, "Loc"), (2, 3, "Loc")], [(0, 1, "Conj")]),
    ]
    examples = [Example(nlp.make_doc(" ".join(w)), make_doc(v, w, e, r)) for w, e, r in data]
    overfit(nlp, n_steps=150, examples=examples)
    rels = nlp("Paris and London .")._.relations
    assert [relation_key(r) for r in rels] == [(0, 1, 2, 3, "Conj")]
    assert nlp.evaluate(examples)["spert_rel_f"] == 1.0


def test_labels_from_init_labels_and_unknown_label_error(tiny_bert):
    nlp = make_nlp(tiny_bert)
    examples = train_examples(nlp)
    labels = {"entities": ["Loc", "Org"], "relations": ["OrgBased_In"]}
    with pytest.raises(ValueError, match=r"label 'Peop'.*does not know"):
        nlp.get_pipe("spert").initialize(lambda: examples, nlp=nlp, labels=labels)
    nlp = make_nlp(tiny_bert)
    nlp.initialize(lambda: examples)
    spert = nlp.get_pipe("spert")
    assert spert.label_data == {
        "entities": ["Loc", "Org", "Peop"],
        "relations": ["Live_In", "OrgBased_In", "Work_For"],
    }
    with pytest.raises(ValueError, match="already initialized"):
        spert.add_entity_label("Misc")


def test_relation_to_missing_entity_error(tiny_bert):
    nlp = make_nlp(tiny_bert)
    doc = make_doc(
        nlp.vocab, ["Mary", "works", "for", "Acme", "."], [(0, 1, "Peop"), (3, 4, "Org")], [(0, 1, "Work_For")]
    )
    doc._.relations = [dict(doc._.relations[0], tail_start=2, tail_end=3, tail_label=None)]
    examples = [Example(nlp.make_doc(doc.text), doc)]
    with pytest.raises(ValueError, match=r"training example 0, relation 0: the tail 2:3 \('for'\) is not an entity"):
        nlp.initialize(lambda: examples)


def test_not_initialized_and_no_transformer_errors(tiny_bert):
    nlp = make_nlp(tiny_bert)
    with pytest.raises(ValueError, match="not initialized"):
        nlp.get_pipe("spert").predict([nlp.make_doc("Paris")])
    bare = spacy.blank("en")
    bare.add_pipe("spert")
    examples = train_examples(bare)
    with pytest.raises(ValueError, match="add a 'transformer' component"):
        bare.initialize(lambda: examples)


def test_pickle_pipeline(trained_nlp):
    nlp2 = pickle.loads(pickle.dumps(trained_nlp))
    assert predictions(nlp2(TRAIN_TEXTS[0])) == predictions(trained_nlp(TRAIN_TEXTS[0]))


def test_strided_windows_cls_and_long_doc(tiny_bert):
    """With strided windows (16 wordpieces, stride 12) a doc spans several
    windows: each token's [CLS] row is the first row of the window holding its
    first wordpiece, and a doc longer than one window is processed."""
    from spacy_spert.models.wordpieces import wordpiece_features

    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, window="strided")
    overfit(nlp, n_steps=5)
    doc = nlp.get_pipe("transformer")(nlp.make_doc(" ".join([TRAIN_TEXTS[0]] * 5)))
    trf = doc._.trf_data
    n_windows, seq_len, _ = trf.model_output.last_hidden_state.shape
    assert n_windows > 2
    feats = wordpiece_features([doc], [trf], 32)
    assert (feats.token_cls_rows % seq_len == 0).all()
    assert (numpy.diff(feats.token_cls_rows) >= 0).all() and feats.token_cls_rows[-1] > 0
    first_rows = [int(trf.align[i].dataXd.ravel()[0]) for i in range(len(doc))]
    assert feats.token_cls_rows.tolist() == [r // seq_len * seq_len for r in first_rows]
    assert any(len(trf.align[i].dataXd) > 1 for i in range(len(doc)))  # tokens in two windows
    out = nlp(doc.text)
    assert len(out) == 45 and all(0 <= s.start < s.end <= 45 for s in out.spans["sc"])
