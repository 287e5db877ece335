"""Losses and decoding rules: what the model's logits mean.

An objective says how many outputs the entity and relation classifiers have,
how their logits are turned into predictions, and how they are trained:

* ``SpERTObjective``: entity softmax over "none" + types with cross-entropy,
  relation sigmoid per type with binary cross-entropy (Eberts & Ulges 2020).
* ``SpERTMTObjective``: an identification logit (binary cross-entropy, IoU
  scaled for entities) and class scores (pairwise ranking loss) per stage;
  prediction from the class scores with a threshold (Xue & Lu 2023).

The losses are written with torch so that the gradient with respect to the
logits comes from autograd; ``compute_loss`` returns it as arrays for thinc.
Decoding works on numpy arrays: inference brings the (few-column) logits to
the host once and decides there.
"""

from dataclasses import dataclass
from typing import Tuple

import numpy
import torch
from thinc.api import get_array_module, torch2xp, xp2torch

from .sampling import TrainingBatch


class SpERTObjective:
    """SpERT's classifiers, decoding and loss.

    Entity logits: (S, n_entity_labels + 1), column 0 is "none".
    Relation logits: (P, n_relation_labels), one sigmoid per type.
    """

    name = "spert"

    def n_entity_outputs(self, n_labels: int) -> int:
        return n_labels + 1

    def n_relation_outputs(self, n_labels: int) -> int:
        return n_labels

    def default_entity_threshold(self, threshold: float) -> float:
        """The threshold of an entity label without its own: 0.0, the argmax
        over "none" and the types decides alone (no probability is below 0).

        threshold (float): The component's global threshold (unused).
        RETURNS (float): 0.0."""
        return 0.0

    def decode_entities(self, entity_logits: numpy.ndarray, threshold: float) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """entity_logits (numpy.ndarray): (S, E) on the host.
        RETURNS: the label id per span (0: none, i + 1: label i) and its
        softmax probability."""
        labels = entity_logits.argmax(axis=1)
        top = entity_logits[numpy.arange(len(labels)), labels]
        # the row sums as a product with ones: numpy's sum along a short last
        # axis is several times slower (likewise max, hence argmax and take)
        exp = numpy.exp(entity_logits - top[:, None])
        return labels, 1.0 / (exp @ numpy.ones((exp.shape[1],), dtype=exp.dtype))

    def decode_relations(self, relation_logits: numpy.ndarray, threshold: float) -> numpy.ndarray:
        """relation_logits (numpy.ndarray): (P, R) on the host.
        RETURNS (numpy.ndarray): (P, R) scores (sigmoid); a relation holds
        where the score is >= threshold."""
        return numpy.exp(-numpy.logaddexp(0.0, -relation_logits)).astype(relation_logits.dtype, copy=False)

    def loss(
        self, entity_logits: torch.Tensor, relation_logits: torch.Tensor, batch: TrainingBatch, entities: bool = True
    ) -> torch.Tensor:
        """Cross-entropy over the entity samples (mean over samples) plus binary
        cross-entropy over the relation samples (mean over types, then samples).

        entities (bool): False: the relation loss only (entities are given).
        RETURNS (torch.Tensor): The scalar loss.
        """
        device = entity_logits.device
        loss = entity_logits.new_zeros(())
        if entities and entity_logits.shape[0]:
            targets = torch.as_tensor(batch.entity_labels, device=device)
            loss = loss + torch.nn.functional.cross_entropy(entity_logits, targets)
        if relation_logits.shape[0] and relation_logits.shape[1]:
            targets = torch.as_tensor(batch.relation_labels, device=device)
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(relation_logits, targets)
        return loss


def compute_loss(objective, entity_logits, relation_logits, batch: TrainingBatch, entities: bool = True):
    """Evaluate the objective's loss on logits given as (numpy/cupy) arrays;
    ``entities=False`` leaves the entity loss out (entities are given).

    RETURNS (Tuple[float, array, array]): the loss and its gradient with respect
        to the entity logits and the relation logits.
    """
    ent = xp2torch(entity_logits, requires_grad=True)
    rel = xp2torch(relation_logits, requires_grad=True)
    loss = objective.loss(ent, rel, batch, entities=entities)
    if loss.requires_grad:
        loss.backward()
    xp = get_array_module(entity_logits)
    d_ent = torch2xp(ent.grad) if ent.grad is not None else xp.zeros_like(entity_logits)
    d_rel = torch2xp(rel.grad) if rel.grad is not None else xp.zeros_like(relation_logits)
    return float(loss.detach().cpu()), d_ent, d_rel


# SpERT.MT ---------------------------------------------------------------------


def ranking_loss(
    scores: torch.Tensor,
    targets: torch.Tensor,
    m_plus: float,
    m_minus: float,
    gamma: float,
) -> torch.Tensor:
    """The pairwise ranking loss of Santos et al. (2015), per sample.

    L+ = log(1 + exp(gamma * (m_plus - score[y+])))  for each gold class y+
    L- = log(1 + exp(gamma * (m_minus + score[y-])))  y-: the highest-scoring
                                                       class that is not gold

    A sample without a gold class (a negative: "none" entity or a pair that
    holds no relation) gets only L-, with y- the highest-scoring class.

    Multi-label samples (a pair holding several relation types): one L+ per
    gold type, summed, plus one L- for the best-scoring type that is not gold
    (none when every type is gold). With a single gold class this is exactly
    the paper's L+ + L-. Summing (rather than averaging) the L+ terms treats
    each gold type like a separate single-label sample that shares the L-.

    scores (torch.Tensor): (N, C) class scores.
    targets (torch.Tensor): (N, C) multi-hot gold classes (bool or 0/1).
    RETURNS (torch.Tensor): (N,) the loss of each sample.
    """
    if scores.shape[1] == 0:
        return scores.new_zeros((scores.shape[0],))
    gold = targets.bool()
    softplus = torch.nn.functional.softplus
    pos = softplus(gamma * (m_plus - scores)) * gold
    wrong = scores.masked_fill(gold, float("-inf")).max(dim=1).values
    has_wrong = ~gold.all(dim=1)
    neg = softplus(gamma * (m_minus + wrong.masked_fill(~has_wrong, 0.0)))
    return pos.sum(dim=1) + torch.where(has_wrong, neg, torch.zeros_like(neg))


def iou_bce(logits: torch.Tensor, is_entity: torch.Tensor, iou: torch.Tensor, delta: float) -> torch.Tensor:
    """SpERT.MT's IoU-scaled binary cross-entropy, per sample:

    H = -q (1 - delta) log p - delta (1 - q) (1 + ENIoU) log(1 - p),  p = sigmoid(logit)

    ENIoU is the span's maximum IoU with a gold entity: negatives that overlap
    a gold entity weigh more; delta < 0.5 weighs the rare positives up.

    logits (torch.Tensor): (N,) identification logits.
    is_entity (torch.Tensor): (N,) q, 1 for a gold entity, else 0.
    iou (torch.Tensor): (N,) ENIoU of each span.
    RETURNS (torch.Tensor): (N,) the loss of each sample.
    """
    q = is_entity.to(logits.dtype)
    logsig = torch.nn.functional.logsigmoid
    return -q * (1 - delta) * logsig(logits) - delta * (1 - q) * (1 + iou.to(logits.dtype)) * logsig(-logits)


@dataclass
class SpERTMTObjective:
    """SpERT.MT (Xue & Lu 2023): an identification and a classification task
    per stage, trained jointly; prediction from the class scores only.

    Logits layout (label ids stay as in SpERT: 0 none, i + 1 type i):
      entity logits (S, E + 1): column 0 the identification logit ("is an
        entity", sigmoid), columns 1..E the class scores s . W_c;
      relation logits (P, R + 1): column 0 the identification logit ("holds
        any relation"), columns 1..R the class scores.

    Loss per stage = alpha * identification + beta * ranking, each a mean over
    the stage's samples; total = entity stage + relation stage.
    * Entity identification: ``iou_bce`` (IoU-scaled BCE) when ``iou_loss``,
      else plain BCE (paper eq. 4, the ablation "-EIL").
    * Relation identification: plain BCE on "the pair holds any gold relation".
    * Ranking: ``ranking_loss`` on the class scores; for a pair with several
      gold types, one L+ per gold type and one L- for the best wrong type.

    ``multitask=False`` is the paper's ablation "-MTL" ("from the binary and
    multi-class multi-task approach" back to "the single-step multi-class
    approach"): only the classification head with the ranking loss is
    trained, in both stages; the identification loss (and so also the IoU
    scaling, which lives in it; ``iou_loss`` then has no effect) is dropped.
    The layout is kept: column 0 is still computed but has no loss of its own
    (with ``entity_logits_in_relation`` it is only a learned input feature of
    the relation classifier); decoding never reads it.

    Decoding (paper eq. 18, threshold theta = the component's ``threshold``):
    a span's label is the argmax class if its maximum score >= theta, else
    none; a pair holds each relation
    type whose score >= theta (multi-label, as the component reads it).
    Scores written to docs (span ``attrs["scores"]`` and relation ``score``)
    are the raw class scores s . W_c as floats: not probabilities and not
    bounded to [0, 1]. The ranking loss pushes gold scores above m_plus and
    wrong ones below -m_minus, so theta (0.85) lies between the margins; a
    sigmoid would not be comparable with theta, which the paper applies to
    the raw score.
    """

    # The paper's settings; ``spacy-spert.SpERTMT.v1`` takes its defaults
    # from here. alpha, beta: weights of the identification and ranking
    # losses; m_plus, m_minus, gamma: margins and scale of the ranking loss;
    # delta: balance of the IoU-scaled loss; multitask, iou_loss: off for the
    # ablations "-MTL" and "-EIL".
    alpha: float = 1.0
    beta: float = 1.0
    m_plus: float = 2.5
    m_minus: float = 0.5
    gamma: float = 2.0
    delta: float = 0.25
    multitask: bool = True
    iou_loss: bool = True
    name = "spert_mt"

    def n_entity_outputs(self, n_labels: int) -> int:
        return n_labels + 1

    def n_relation_outputs(self, n_labels: int) -> int:
        return n_labels + 1

    def default_entity_threshold(self, threshold: float) -> float:
        """The threshold of an entity label without its own: theta, the
        global threshold that decoding applies to the class scores.

        threshold (float): The component's global threshold.
        RETURNS (float): ``threshold``."""
        return threshold

    def decode_entities(self, entity_logits: numpy.ndarray, threshold: float) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """entity_logits (numpy.ndarray): (S, E) on the host.
        RETURNS: the label id per span (0: none, i + 1: label i) and its
        best raw class score (also for "none" spans)."""
        classes = entity_logits[:, 1:]
        if classes.shape[1] == 0:
            return numpy.zeros((len(classes),), dtype="int64"), numpy.zeros((len(classes),), dtype=classes.dtype)
        best = classes.argmax(axis=1)
        scores = classes[numpy.arange(len(best)), best]
        return numpy.where(scores >= threshold, best + 1, 0), scores

    def decode_relations(self, relation_logits: numpy.ndarray, threshold: float) -> numpy.ndarray:
        """relation_logits (numpy.ndarray): (P, R) on the host.
        RETURNS (numpy.ndarray): (P, R - 1) raw class scores; a relation
        holds where the score is >= threshold."""
        return relation_logits[:, 1:]

    def loss(
        self, entity_logits: torch.Tensor, relation_logits: torch.Tensor, batch: TrainingBatch, entities: bool = True
    ) -> torch.Tensor:
        """entities (bool): False: the relation stage only (entities are given).
        RETURNS (torch.Tensor): The scalar loss (see the class docstring)."""
        device = entity_logits.device
        loss = entity_logits.new_zeros(())
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        if entities and entity_logits.shape[0]:
            labels = torch.as_tensor(batch.entity_labels, device=device).long()
            n_classes = entity_logits.shape[1] - 1
            onehot = torch.nn.functional.one_hot(labels, n_classes + 1)[:, 1:]
            loss = (
                loss
                + self.beta * ranking_loss(entity_logits[:, 1:], onehot, self.m_plus, self.m_minus, self.gamma).mean()
            )
            if self.multitask:
                q = (labels > 0).to(entity_logits.dtype)
                if self.iou_loss:
                    iou = torch.as_tensor(batch.entity_iou, device=device).to(entity_logits.dtype)
                    ident = iou_bce(entity_logits[:, 0], q, iou, self.delta).mean()
                else:
                    ident = bce(entity_logits[:, 0], q)
                loss = loss + self.alpha * ident
        if relation_logits.shape[0] and relation_logits.shape[1] > 1:
            targets = torch.as_tensor(batch.relation_labels, device=device).to(relation_logits.dtype)
            loss = (
                loss
                + self.beta
                * ranking_loss(relation_logits[:, 1:], targets, self.m_plus, self.m_minus, self.gamma).mean()
            )
            if self.multitask:
                holds = (targets > 0).any(dim=1).to(relation_logits.dtype)
                loss = loss + self.alpha * bce(relation_logits[:, 0], holds)
        return loss
