"""Losses and decoding rules: what the model's logits mean.

An objective says how many outputs the entity and relation classifiers have,
how their logits are turned into predictions, and how they are trained:

* ``SpERTObjective``: entity softmax over "none" + types with cross-entropy,
  relation sigmoid per type with binary cross-entropy (Eberts & Ulges 2020).

The losses are written with torch so that the gradient with respect to the
logits comes from autograd; ``compute_loss`` returns it as arrays for thinc.
"""
from typing import Tuple

import numpy
import torch
from thinc.api import get_array_module, torch2xp, xp2torch

from .candidates import SpanBatch


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

    def keep_entities(self, entity_logits: torch.Tensor, threshold: float) -> torch.Tensor:
        """RETURNS (torch.Tensor): bool (S,), the spans classified as an entity."""
        return entity_logits.argmax(dim=1) != 0

    def decode_entities(self, entity_logits: torch.Tensor, threshold: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """RETURNS: the label id per span (0: none, i + 1: label i) and its
        softmax probability."""
        probs = torch.softmax(entity_logits, dim=1)
        scores, labels = probs.max(dim=1)
        return labels, scores

    def decode_relations(self, relation_logits: torch.Tensor, threshold: float) -> torch.Tensor:
        """RETURNS (torch.Tensor): (P, R) scores; a relation holds where the
        score is >= threshold."""
        return torch.sigmoid(relation_logits)

    def loss(self, entity_logits: torch.Tensor, relation_logits: torch.Tensor, batch: SpanBatch) -> torch.Tensor:
        """Cross-entropy over the entity samples (mean over samples) plus binary
        cross-entropy over the relation samples (mean over types, then samples).

        RETURNS (torch.Tensor): The scalar loss.
        """
        device = entity_logits.device
        loss = entity_logits.new_zeros(())
        if entity_logits.shape[0]:
            targets = torch.as_tensor(batch.entity_labels, device=device)
            loss = loss + torch.nn.functional.cross_entropy(entity_logits, targets)
        if relation_logits.shape[0] and relation_logits.shape[1]:
            targets = torch.as_tensor(batch.relation_labels, device=device)
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(relation_logits, targets)
        return loss


def compute_loss(objective, entity_logits, relation_logits, batch: SpanBatch):
    """Evaluate the objective's loss on logits given as (numpy/cupy) arrays.

    RETURNS (Tuple[float, array, array]): the loss and its gradient with respect
        to the entity logits and the relation logits.
    """
    ent = xp2torch(entity_logits, requires_grad=True)
    rel = xp2torch(relation_logits, requires_grad=True)
    loss = objective.loss(ent, rel, batch)
    if loss.requires_grad:
        loss.backward()
    xp = get_array_module(entity_logits)
    d_ent = torch2xp(ent.grad) if ent.grad is not None else xp.zeros_like(entity_logits)
    d_rel = torch2xp(rel.grad) if rel.grad is not None else xp.zeros_like(relation_logits)
    return float(loss.detach().cpu()), d_ent, d_rel
