"""SpERT.MT (Xue & Lu 2023): the losses against hand-computed values, the
decoding rule, learning, serialization and the ablation switches."""

import math
from types import SimpleNamespace

import numpy
import pytest
import spacy
import torch
from conftest import TRAIN_TEXTS, head_of, make_nlp, overfit, train_examples, train_step
from spacy.util import fix_random_seed, make_tempdir

from spacy_spert.models.objectives import SpERTMTObjective, SpERTObjective, iou_bce, ranking_loss
from spacy_spert.relations import relation_key


def mt_config(**model_args):
    model = {
        "@architectures": "spacy-spert.SpERTMT.v1",
        "tok2vec": {"@layers": "spacy-spert.WordpieceListener.v1", "upstream": "*"},
        **model_args,
    }
    return {"model": model, "threshold": 0.85, "neg_entity_count": 120, "neg_relation_count": 120}


def predictions(doc):
    ents = [(s.start, s.end, s.label_) for s in doc.spans["sc"]]
    return (
        ents,
        doc.spans["sc"].attrs["scores"].tolist(),
        sorted(relation_key(r) for r in doc._.relations),
        [r["score"] for r in doc._.relations],
    )


# Losses ---------------------------------------------------------------------


def test_ranking_loss_hand_computed():
    # m+ 2.5, m- 0.5, gamma 2; softplus(x) = log(1 + e^x)
    scores = torch.tensor(
        [
            # positive, gold class 0. The wrong classes score 1.0 (class 1) and
            # 2.0 (class 2): y- is class 2, not the first wrong class.
            # L+ = log(1 + e^(2 (2.5 - 3)))  = log(1 + e^-1) = 0.3132617
            # L- = log(1 + e^(2 (0.5 + 2)))  = log(1 + e^5)  = 5.0067153
            [3.0, 1.0, 2.0],
            # negative (no gold class): only L-, y- = argmax = class 0
            # L- = log(1 + e^(2 (0.5 + 0.5))) = log(1 + e^2) = 2.1269280
            [0.5, -1.0, 0.25],
            # multi-label (relations): gold classes 0 and 1, one L+ each,
            # L- for the best wrong class 2:
            # log(1 + e^-1) + log(1 + e^0) + log(1 + e^(2 (0.5 - 1)))
            # = 0.3132617 + 0.6931472 + 0.3132617 = 1.3196706
            [3.0, 2.5, -1.0],
            # every class gold: three L+ = 3 log(1 + e^0) = 3 log 2 = 2.0794415,
            # no wrong class, so no L-
            [2.5, 2.5, 2.5],
        ]
    )
    targets = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 1, 1]])
    got = ranking_loss(scores, targets, m_plus=2.5, m_minus=0.5, gamma=2.0)
    expected = [0.3132617 + 5.0067153, 2.1269280, 1.3196706, 2.0794415]
    numpy.testing.assert_allclose(got.tolist(), expected, rtol=1e-6)
    # the gradient reaches only the gold classes and the chosen wrong class
    scores.requires_grad_(True)
    ranking_loss(scores, targets, 2.5, 0.5, 2.0).sum().backward()
    assert scores.grad[0, 1] == 0 and scores.grad[0, 2] > 0 and scores.grad[0, 0] < 0
    assert scores.grad[1].tolist()[1:] == [0.0, 0.0] and scores.grad[1, 0] > 0
    # no classes: zero loss per sample
    assert ranking_loss(torch.zeros((2, 0)), torch.zeros((2, 0)), 2.5, 0.5, 2.0).tolist() == [0.0, 0.0]


def test_iou_bce_hand_computed():
    # H = -q (1 - delta) log p - delta (1 - q) (1 + ENIoU) log(1 - p), delta 0.25
    logits = torch.tensor([0.0, 0.0, math.log(3.0), math.log(3.0), 0.0])
    is_entity = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    iou = torch.tensor([1.0, 1 / 3, 0.0, 1.0, 0.0])
    got = iou_bce(logits, is_entity, iou, delta=0.25)
    expected = [
        0.75 * math.log(2),  # gold entity, p 0.5: 0.75 x 0.6931472 = 0.5198604
        0.25 * (4 / 3) * math.log(2),  # overlaps a gold entity (IoU 1/3), p 0.5: 0.2310491
        0.25 * math.log(4),  # disjoint (IoU 0), p 0.75, 1 - p = 0.25: 0.25 x 1.3862944 = 0.3465736
        0.75 * math.log(4 / 3),  # gold entity, p 0.75: 0.75 x 0.2876821 = 0.2157616
        0.25 * math.log(2),  # disjoint, p 0.5: 0.1732868
    ]
    numpy.testing.assert_allclose(got.tolist(), expected, rtol=1e-6)
    numpy.testing.assert_allclose(expected, [0.5198604, 0.2310491, 0.3465736, 0.2157616, 0.1732868], rtol=1e-6)
    # the hard negative (overlapping) weighs (1 + 1/3) times the easy one
    assert got[1] / got[4] == pytest.approx(4 / 3)


def fake_batch():
    return SimpleNamespace(
        entity_labels=numpy.array([1, 2, 0, 0]),
        entity_iou=numpy.array([1.0, 1.0, 1 / 3, 0.0], dtype="float32"),
        relation_labels=numpy.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype="float32"),
    )


def test_objective_loss_is_the_sum_of_the_parts():
    torch.manual_seed(0)
    ent = torch.randn(4, 3)  # column 0 identification, 2 entity types
    rel = torch.randn(3, 3)  # column 0 identification, 2 relation types
    batch = fake_batch()
    ent_onehot = torch.tensor([[1, 0], [0, 1], [0, 0], [0, 0]])
    rel_targets = torch.as_tensor(batch.relation_labels)
    rank_e = ranking_loss(ent[:, 1:], ent_onehot, 2.5, 0.5, 2.0).mean()
    rank_r = ranking_loss(rel[:, 1:], rel_targets, 2.5, 0.5, 2.0).mean()
    q = torch.tensor([1.0, 1.0, 0.0, 0.0])
    iou_e = iou_bce(ent[:, 0], q, torch.as_tensor(batch.entity_iou), 0.25).mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    bce_e = bce(ent[:, 0], q)
    bce_r = bce(rel[:, 0], torch.tensor([1.0, 0.0, 1.0]))

    full = SpERTMTObjective(alpha=0.5, beta=2.0).loss(ent, rel, batch)
    assert float(full) == pytest.approx(float(0.5 * iou_e + 2.0 * rank_e + 0.5 * bce_r + 2.0 * rank_r), rel=1e-6)
    no_iou = SpERTMTObjective(iou_loss=False).loss(ent, rel, batch)
    assert float(no_iou) == pytest.approx(float(bce_e + rank_e + bce_r + rank_r), rel=1e-6)
    single = SpERTMTObjective(multitask=False).loss(ent, rel, batch)
    assert float(single) == pytest.approx(float(rank_e + rank_r), rel=1e-6)


def test_objective_layout_and_decoding():
    objective = SpERTMTObjective()
    assert objective.n_entity_outputs(4) == 5 and objective.n_relation_outputs(5) == 6
    # column 0 (identification) is ignored at prediction
    ent = numpy.array([[-9.0, 0.9, 0.2, 0.5], [9.0, 0.5, 0.84, -1.0], [0.0, 1.0, 3.0, 0.85]], dtype="float32")
    labels, scores = objective.decode_entities(ent, 0.85)
    assert labels.tolist() == [1, 0, 2]
    numpy.testing.assert_allclose(scores.tolist(), [0.9, 0.84, 3.0], rtol=1e-6)
    rel = numpy.array([[9.0, 0.85, 2.0], [-9.0, 0.1, 0.84]], dtype="float32")
    numpy.testing.assert_allclose(objective.decode_relations(rel, 0.85), [[0.85, 2.0], [0.1, 0.84]], rtol=1e-6)


# The pipeline ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_mt(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, mt_config())
    overfit(nlp, n_steps=250)
    return nlp


def test_mt_model_structure(trained_mt):
    spert = trained_mt.get_pipe("spert")
    assert isinstance(spert.model.attrs["objective"], SpERTMTObjective)
    head = head_of(trained_mt)
    n_ent, n_rel = len(spert.entity_labels), len(spert.relation_labels)
    ent, rel = head.entity_classifier, head.relation_classifier
    assert ent.classes.bias is None and rel.classes.bias is None
    assert ent.classes.out_features == n_ent and ent.identifier.out_features == 1
    assert rel.classes.out_features == n_rel and rel.identifier.out_features == 1
    hidden = 32
    assert rel.classes.in_features == 3 * hidden + 2 * 25 + 2 * (n_ent + 1)


def test_mt_overfit_evaluate_is_perfect(trained_mt):
    scores = trained_mt.evaluate(train_examples(trained_mt))
    assert scores["spert_ent_f"] == 1.0 and scores["spert_rel_f"] == 1.0, scores


def test_mt_scores_are_raw_class_scores(trained_mt):
    doc = trained_mt(TRAIN_TEXTS[0])
    scores = doc.spans["sc"].attrs["scores"]
    assert len(scores) == 3 and all(float(s) >= 0.85 for s in scores)
    assert len(doc._.relations) == 2
    for rel in doc._.relations:
        assert isinstance(rel["score"], float) and rel["score"] >= 0.85


def test_mt_save_load_same_predictions(trained_mt):
    expected = [predictions(d) for d in trained_mt.pipe(TRAIN_TEXTS)]
    with make_tempdir() as tmp:
        trained_mt.to_disk(tmp)
        nlp2 = spacy.load(tmp)
    assert nlp2.get_pipe("spert").model.attrs["head_config"]["identification_heads"] is True
    assert [predictions(d) for d in nlp2.pipe(TRAIN_TEXTS)] == expected


@pytest.mark.parametrize("switch", ["multitask", "iou_loss", "entity_logits_in_relation"])
def test_mt_switches_build_and_train(tiny_bert, switch):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, mt_config(**{switch: False}))
    examples = train_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    spert = nlp.get_pipe("spert")
    objective = spert.model.attrs["objective"]
    head = head_of(nlp)
    if switch == "entity_logits_in_relation":
        assert not head.relation_classifier.uses_entity_logits
        assert head.relation_classifier.classes.in_features == 3 * 32 + 2 * 25
    else:
        assert getattr(objective, switch) is False
    for _ in range(3):
        losses = train_step(nlp, examples, optimizer)
        assert numpy.isfinite(losses["spert"]) and losses["spert"] > 0
    list(nlp.pipe(TRAIN_TEXTS))


def test_default_factory_is_still_spert(tiny_bert):
    nlp = make_nlp(tiny_bert)
    assert nlp.config["components"]["spert"]["model"]["@architectures"] == "spacy-spert.SpERT.v1"
    examples = train_examples(nlp)
    nlp.initialize(lambda: examples)
    spert = nlp.get_pipe("spert")
    assert type(spert.model.attrs["objective"]) is SpERTObjective
    head = head_of(nlp)
    # one linear layer with bias per stage; weights saved under the names of
    # spacy-spert 0.1.0 still load (test_model.py, legacy names)
    assert set(head.state_dict()) == {
        "width_embedding.weight",
        "entity_classifier.classes.weight",
        "entity_classifier.classes.bias",
        "relation_classifier.classes.weight",
        "relation_classifier.classes.bias",
    }
    assert head.entity_classifier.classes.out_features == len(spert.entity_labels) + 1
    assert head.relation_classifier.classes.out_features == len(spert.relation_labels)
