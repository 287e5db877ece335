"""Relation extraction over entities that are already there: the suggester
spacy-spert.given_entities.v1 takes the spans of doc.ents or a span group set
by an earlier component (entity_ruler, ner) or the data; spert keeps them and
their labels and only classifies (and, in training, learns) the relations."""

import numpy
import pytest
import spacy
from conftest import GIVEN_ENTS, TRAIN_DATA, TRAIN_TEXTS, gold_ents_docs, gold_ents_examples, make_nlp, overfit
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import fix_random_seed, make_tempdir

from spacy_spert.models.suggesters import GivenEntities
from spacy_spert.relations import relation_key


def gold_relations(doc):
    return sorted(relation_key(r) for r in doc._.relations)


def ruler_patterns():
    patterns = []
    for words, ents, _ in TRAIN_DATA:
        for start, end, label in ents:
            patterns.append({"label": label, "pattern": [{"ORTH": w} for w in words[start:end]]})
    return patterns


@pytest.fixture(scope="module")
def trained_given(tiny_bert):
    """spert trained on gold doc.ents, relation loss only."""
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, GIVEN_ENTS)
    overfit(nlp, examples=gold_ents_examples(nlp))
    return nlp


def test_given_entities_suggester():
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words="a b c d e".split())
    doc.spans["mine"] = [doc[3:5], doc[0:1], doc[0:1], doc[1:3]]
    doc.spans["mine"][2].label_ = "X"  # same boundaries as [1]: the first is kept
    suggester = GivenEntities("spans:mine", scope="doc", max_group_length=2)
    assert [(s.start, s.end) for s in suggester.entities(doc)] == [(0, 1), (1, 3), (3, 5)]
    cands = suggester.doc_candidates(doc)
    assert cands.starts.tolist() == [0, 1, 3] and cands.ends.tolist() == [1, 3, 5]
    assert cands.token_groups.tolist() == [0, 0, 1, 1, 2]
    assert suggester([doc, Doc(nlp.vocab, words=["x"])]).given_entities
    assert GivenEntities("spans:none").entities(doc) == []
    with pytest.raises(ValueError, match="'ents' or 'spans:KEY'"):
        GivenEntities("spans:")


def test_relations_over_entity_ruler_entities(trained_given):
    """entity_ruler -> spert: the ruler's entities are kept as they are and
    spert finds the gold relations among them."""
    nlp = trained_given
    ruler = nlp.add_pipe("entity_ruler", before="spert")
    ruler.add_patterns(ruler_patterns())
    try:
        docs = list(nlp.pipe(TRAIN_TEXTS))
    finally:
        nlp.remove_pipe("entity_ruler")
    for doc, gold in zip(docs, gold_ents_docs(nlp.vocab)):
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in gold.ents]
        assert gold_relations(doc) == gold_relations(gold)
        assert "sc" not in doc.spans  # spert writes no entities of its own
        labels = {(e.start, e.end): e.label_ for e in doc.ents}
        for rel in doc._.relations:
            assert rel["head_label"] == labels[rel["head_start"], rel["head_end"]]
            assert rel["tail_label"] == labels[rel["tail_start"], rel["tail_end"]]
            assert isinstance(rel["score"], float)


def test_unknown_labels_pass_through(trained_given):
    """The relation classifier does not read entity types (as in SpERT): a
    given entity with a label spert never saw keeps it, also in the relation."""
    nlp = trained_given
    doc = nlp.make_doc(TRAIN_TEXTS[1])  # "John Doe lives in London ."
    doc.ents = [doc.char_span(0, 8, label="PERSON"), doc.char_span(18, 24, label="GPE")]
    doc = nlp(doc)
    assert [(r["head_label"], r["label"], r["tail_label"]) for r in doc._.relations] == [("PERSON", "Live_In", "GPE")]


def test_relations_over_trained_ner(trained_given, tiny_bert):
    """A trained ner -> spert: spert classifies the relations among the
    entities the ner component predicts."""
    fix_random_seed(0)
    ner_nlp = spacy.blank("en")
    ner_nlp.add_pipe("ner")
    examples = gold_ents_examples(ner_nlp)
    optimizer = ner_nlp.initialize(lambda: examples)
    for _ in range(60):
        ner_nlp.update(examples, sgd=optimizer, drop=0.0)
    nlp = trained_given
    nlp.add_pipe("ner", source=ner_nlp, before="spert")
    try:
        docs = list(nlp.pipe(TRAIN_TEXTS))
        with make_tempdir() as tmp:  # and the combined pipeline saves and loads
            nlp.to_disk(tmp)
            reloaded = [gold_relations(d) for d in spacy.load(tmp).pipe(TRAIN_TEXTS)]
    finally:
        nlp.remove_pipe("ner")
    for doc, gold in zip(docs, gold_ents_docs(nlp.vocab)):
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in gold.ents]
        assert gold_relations(doc) == gold_relations(gold)
    assert reloaded == [gold_relations(d) for d in docs]


def test_training_learns_relations_only(tiny_bert):
    """With given entities the entity loss is left out: the gradient of the
    entity logits is zero, the relation logits get one."""
    nlp = make_nlp(tiny_bert, GIVEN_ENTS)
    examples = gold_ents_examples(nlp)
    nlp.initialize(lambda: examples)
    spert = nlp.get_pipe("spert")
    docs = [eg.predicted for eg in examples]
    nlp.get_pipe("transformer").set_annotations(docs, nlp.get_pipe("transformer").predict(docs))
    from spacy_spert.models.sampling import TrainingBatch

    batch = TrainingBatch.from_samples(docs, [spert._sample(eg) for eg in examples])
    assert (batch.entity_labels > 0).all()  # no negative entities are sampled
    logits, _ = spert.model.begin_update((docs, batch))
    loss, d_logits = spert.get_loss(examples, (batch, logits))
    assert loss > 0
    assert not numpy.asarray(d_logits.entity_logits).any()
    assert numpy.asarray(d_logits.relation_logits).any()


def test_relation_to_a_span_that_is_not_given(tiny_bert):
    nlp = make_nlp(tiny_bert, GIVEN_ENTS)
    doc = gold_ents_docs(nlp.vocab)[1]
    doc.ents = [doc.ents[0]]  # the tail, London, is no longer given
    with pytest.raises(ValueError, match=r"relation 0: the tail 4:5 \('London', Loc\) is not an entity in doc.ents"):
        nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
