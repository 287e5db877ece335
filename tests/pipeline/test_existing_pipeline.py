"""Adding spert to a pipeline someone already has: a trained transformer + ner
(the recipe of docs/existing-pipeline.md).

(a) spert listens to the shared transformer, which stays frozen (excluded from
    the update, annotating so that spert reads its output): ner's predictions
    cannot change; spert learns the relations among ner's entities
    (``given_entities.v1``, source "ents").
(b) ``nlp.replace_listeners("transformer", "ner", ["model.tok2vec"])`` gives
    ner its own copy of the transformer (frozen with ner); the shared one is
    then fine-tuned by spert alone, which finds entities of its own in
    doc.spans["sc"] and the relations among them, and ner is unchanged.
(c) The same as (a) with ``spacy train``: the transformer and ner sourced
    from the pipeline, frozen and annotating.
"""

import numpy
import pytest
import spacy
from conftest import (
    GIVEN_ENTS,
    TRAIN_DATA,
    TRAIN_TEXTS,
    doc_annotations,
    gold_annotations,
    gold_ents_docs,
    gold_ents_examples,
    train_examples,
    transformer_nlp,
)
from spacy.tokens import DocBin
from spacy.util import fix_random_seed

from spacy_spert.relations import relation_key

NER_MODEL = {
    "@architectures": "spacy.TransitionBasedParser.v2",
    "state_type": "ner",
    "extra_state_tokens": False,
    "hidden_width": 64,
    "maxout_pieces": 2,
    "use_upper": False,
    "tok2vec": {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "grad_factor": 1.0,
        "pooling": {"@layers": "reduce_mean.v1"},
        "upstream": "*",
    },
}


def ents_of(docs):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs]


def relations_of(docs):
    return [sorted(relation_key(r) for r in doc._.relations) for doc in docs]


def transformer_weights(nlp, name="transformer"):
    return {k: v.detach().clone() for k, v in nlp.get_pipe(name).model.transformer.named_parameters()}


def train_spert_only(nlp, examples, **update_settings):
    """Initialize spert alone (nlp.initialize would reset ner) and train for
    200 steps at 1e-3 with ``nlp.update(examples, **update_settings)``."""
    nlp.get_pipe("spert").initialize(lambda: examples, nlp=nlp)
    optimizer = nlp.resume_training()
    optimizer.learn_rate = 1e-3
    for _ in range(200):
        nlp.update(examples, sgd=optimizer, **update_settings)


def assert_reloads_the_same(nlp, path, ner_before, docs):
    """Saved to ``path`` and loaded, the pipeline finds ner's entities as
    before spert was added and the relations ``docs`` have."""
    nlp.to_disk(path)
    reloaded = list(spacy.load(path).pipe(TRAIN_TEXTS))
    assert ents_of(reloaded) == ner_before and relations_of(reloaded) == relations_of(docs)


@pytest.fixture(scope="module")
def existing(tiny_bert, tmp_path_factory):
    """A trained transformer (tiny BERT) + ner pipeline, saved: what a user
    already has. Its ner finds the gold entities of TRAIN_DATA."""
    fix_random_seed(0)
    nlp = transformer_nlp(tiny_bert, window={"@span_getters": "spacy-transformers.doc_spans.v1"})
    nlp.add_pipe("ner", config={"model": NER_MODEL})
    examples = gold_ents_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer)
    assert ents_of(nlp.pipe(TRAIN_TEXTS)) == ents_of(gold_ents_docs(nlp.vocab))
    path = tmp_path_factory.mktemp("existing") / "pipeline"
    nlp.to_disk(path)
    return path


def test_frozen_shared_transformer_given_entities(existing, tmp_path):
    """(a): the transformer and ner stay as they are; spert learns the
    relations among ner's entities."""
    fix_random_seed(0)
    nlp = spacy.load(existing)
    ner_before = ents_of(nlp.pipe(TRAIN_TEXTS))
    weights = transformer_weights(nlp)
    nlp.add_pipe("spert", config=GIVEN_ENTS)
    train_spert_only(nlp, gold_ents_examples(nlp), exclude=["transformer", "ner"], annotates=["transformer", "ner"])
    for name, value in transformer_weights(nlp).items():
        assert bool((value == weights[name]).all()), name
    docs = list(nlp.pipe(TRAIN_TEXTS))
    assert ents_of(docs) == ner_before
    assert relations_of(docs) == relations_of(gold_ents_docs(nlp.vocab))
    assert "sc" not in docs[0].spans  # spert keeps ner's entities, writes none
    assert_reloads_the_same(nlp, tmp_path / "with_spert", ner_before, docs)


def test_replace_listeners_spert_entities(existing, tmp_path):
    """(b): ner gets its own copy of the transformer; the shared transformer
    is fine-tuned by spert, which finds its own entities and relations; ner
    is unchanged."""
    fix_random_seed(0)
    nlp = spacy.load(existing)
    ner_before = ents_of(nlp.pipe(TRAIN_TEXTS))
    nlp.replace_listeners("transformer", "ner", ["model.tok2vec"])
    weights = transformer_weights(nlp)
    nlp.add_pipe("spert")
    train_spert_only(nlp, train_examples(nlp), exclude=["ner"])
    changed = transformer_weights(nlp)
    assert any(not bool((changed[name] == value).all()) for name, value in weights.items())  # fine-tuned
    docs = list(nlp.pipe(TRAIN_TEXTS))
    assert ents_of(docs) == ner_before
    assert [doc_annotations(doc) for doc in docs] == [gold_annotations(ents, rels) for _, ents, rels in TRAIN_DATA]
    assert_reloads_the_same(nlp, tmp_path / "with_spert", ner_before, docs)


@pytest.mark.parametrize("recipe", ["frozen", "replace_listeners"])
def test_spacy_train_with_sourced_components(existing, tmp_path, recipe):
    """(c): `spacy train` with the transformer and ner sourced from the
    pipeline (the configs of docs/existing-pipeline.md): (a) both frozen and
    annotating, relations among ner's entities; (b) ner with its own copy of
    the transformer, frozen, the transformer fine-tuned for spert."""
    from spacy.cli.init_config import fill_config
    from spacy.cli.train import train

    nlp = spacy.blank("en")
    DocBin(docs=gold_ents_docs(nlp.vocab), store_user_data=True).to_disk(tmp_path / "train.spacy")
    base = tmp_path / "base.cfg"
    settings = FROZEN if recipe == "frozen" else REPLACE_LISTENERS
    base.write_text(CONFIG.format(existing=existing, train=tmp_path / "train.spacy", **settings), encoding="utf8")
    fill_config(tmp_path / "config.cfg", base, silent=True)  # (spacy init fill-config)
    train(tmp_path / "config.cfg", tmp_path / "out", use_gpu=-1)
    before = spacy.load(existing)
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert trained.pipe_names == ["transformer", "ner", "spert"]
    docs = list(trained.pipe(TRAIN_TEXTS))
    assert ents_of(docs) == ents_of(before.pipe(TRAIN_TEXTS))
    assert relations_of(docs) == relations_of(gold_ents_docs(nlp.vocab))
    old = transformer_weights(before)
    same = [numpy.array_equal(value.numpy(), old[name].numpy()) for name, value in transformer_weights(trained).items()]
    assert all(same) if recipe == "frozen" else not all(same)


FROZEN = {"ner_extra": "", "frozen": '["transformer","ner"]', "annotating": '["transformer","ner"]'}
REPLACE_LISTENERS = {"ner_extra": 'replace_listeners = ["model.tok2vec"]', "frozen": '["ner"]', "annotating": '["ner"]'}
CONFIG = """
[paths]
train = "{train}"
dev = "{train}"

[nlp]
lang = "en"
pipeline = ["transformer","ner","spert"]

[components]

[components.transformer]
source = "{existing}"

[components.ner]
source = "{existing}"
{ner_extra}

[components.spert]
factory = "spert"

[components.spert.suggester]
@misc = "spacy-spert.given_entities.v1"
source = "ents"

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${{paths.train}}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${{paths.dev}}

[training]
frozen_components = {frozen}
annotating_components = {annotating}
max_steps = 200
eval_frequency = 200
dropout = 0.0
seed = 0

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.001

[training.batcher]
@batchers = "spacy.batch_by_sequence.v1"
size = 4
"""
