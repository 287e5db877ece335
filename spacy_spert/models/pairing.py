"""Pairing groups and the relation candidates they allow.

Relation candidates are the ordered pairs of spans whose first tokens share
a pairing group: a scope (a sentence or the doc, ``suggesters.scope_ids``)
cut into consecutive pieces of at most ``max_group_length`` tokens, so that
the pairs of a long text grow linearly with its length. Everything here works
on numpy arrays of token offsets and span indices:

* ``pairing_groups``: the pairing group of each token (the suggesters use it
  for candidates, the sampler for strong negative pairs);
* ``pairs_within_groups``: all ordered pairs of kept spans of one group
  (inference);
* ``group_token_counts`` and ``top_per_group``: the bound on the spans paired
  per group at inference (the highest-scoring ones).
"""

from functools import lru_cache
from typing import Optional, Tuple

import numpy

from . import tuning

Ints1d = numpy.ndarray


def pairing_groups(n_tokens: int, scopes: Optional[Ints1d], max_length: int) -> Ints1d:
    """The pairing group of each token: relation candidates are pairs of
    spans whose first tokens share it. It is the scope (``scope_ids``) cut
    into consecutive pieces of at most ``max_length`` tokens (0: no cut), so
    that the pairs of a long sentence or of text without sentence boundaries
    grow linearly with its length. A span may end in the next group of its
    scope: cutting loses no entity, only pairs across a cut.

    n_tokens (int): The number of tokens of the doc.
    scopes (Optional[Ints1d]): ``scope_ids`` of the doc (None: one scope).
    max_length (int): The longest group, in tokens; 0 for no limit.
    RETURNS (Ints1d): (n_tokens,) int64 ids, 0, 1, ... in token order.
    """
    if scopes is None:
        if max_length > 0:
            return numpy.arange(n_tokens, dtype="int64") // max_length
        scopes = numpy.zeros((n_tokens,), dtype="int64")
    if n_tokens == 0 or max_length <= 0:
        return numpy.asarray(scopes, dtype="int64")
    new_scope = numpy.ones((n_tokens,), dtype=bool)
    new_scope[1:] = scopes[1:] != scopes[:-1]
    first = numpy.maximum.accumulate(numpy.where(new_scope, numpy.arange(n_tokens), 0))
    position = numpy.arange(n_tokens) - first
    new_group = new_scope | (position % max_length == 0)
    return (numpy.cumsum(new_group) - 1).astype("int64")


def pairs_within_groups(kept: numpy.ndarray, groups: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """All ordered pairs (a, b), a != b, of kept spans in the same group,
    ordered by the head's group, then by position in ``kept``.

    kept (numpy.ndarray): (K,) indices of the kept spans.
    groups (numpy.ndarray): (S,) pairing group of every span.
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): head and tail span indices.
    """
    if len(kept) < 2:
        empty = numpy.zeros((0,), dtype="int64")
        return empty, empty
    grp = groups[kept]
    if not numpy.count_nonzero(grp != grp[0]):  # one group (a sentence): every ordered pair
        head_pos, tail_pos = _all_pairs(len(kept))
        return kept[head_pos], kept[tail_pos]
    if len(kept) <= tuning.DENSE_PAIRS_MAX:
        # Few spans (a sentence, a small batch): the (K, K) same-group mask.
        # Its pairs come in the order of the general path below, as the kept
        # spans are ordered by group (candidates are; top_per_group keeps it).
        same = grp[:, None] == grp[None, :]
        numpy.fill_diagonal(same, False)
        head_pos, tail_pos = numpy.nonzero(same)
        return kept[head_pos], kept[tail_pos]
    order = numpy.argsort(grp, kind="stable")
    kept, grp = kept[order], grp[order]
    group_start, counts = _runs(grp)
    group = numpy.repeat(numpy.arange(len(counts)), counts)
    per_head = counts[group]  # partners (incl. itself) per kept span
    head_pos = numpy.repeat(numpy.arange(len(kept)), per_head)
    first = numpy.cumsum(per_head) - per_head
    tail_pos = group_start[group[head_pos]] + numpy.arange(len(head_pos)) - numpy.repeat(first, per_head)
    mask = head_pos != tail_pos
    return kept[head_pos[mask]], kept[tail_pos[mask]]


@lru_cache(maxsize=64)
def _all_pairs(n: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): Every ordered pair
    (a, b), a != b, of 0..n-1, ordered by a, then b (read-only arrays shared
    by every call)."""
    head_pos, tail_pos = numpy.nonzero(~numpy.eye(n, dtype=bool))
    head_pos.flags.writeable = False
    tail_pos.flags.writeable = False
    return head_pos, tail_pos


def group_token_counts(starts: numpy.ndarray, ends: numpy.ndarray, groups: numpy.ndarray) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The number of tokens each group's spans cover
    (max end - min start), indexed by group id (0 for ids without spans)."""
    n = int(groups.max()) + 1
    first = numpy.full((n,), int(ends.max()), dtype="int64")
    last = numpy.zeros((n,), dtype="int64")
    numpy.minimum.at(first, groups, starts)
    numpy.maximum.at(last, groups, ends)
    return numpy.maximum(last - first, 0)


def top_per_group(
    kept: numpy.ndarray, scores: numpy.ndarray, groups: numpy.ndarray, limits: numpy.ndarray
) -> numpy.ndarray:
    """The kept spans with the highest scores, at most ``limits[group]`` per group.

    kept (numpy.ndarray): (K,) span indices; scores (numpy.ndarray): (K,) their scores.
    groups (numpy.ndarray): (S,) group id per span; limits: (n_groups,).
    RETURNS (numpy.ndarray): the selected span indices (ordered by group).
    """
    by_score = numpy.argsort(-scores, kind="stable")
    grp = groups[kept[by_score]]
    by_group = numpy.argsort(grp, kind="stable")
    order, grp = by_score[by_group], grp[by_group]
    group_start, counts = _runs(grp)
    rank = numpy.arange(len(grp)) - numpy.repeat(group_start, counts)
    return kept[order][rank < limits[grp]]


def _runs(values: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): The first position and
    the length of each run of equal values (of a non-empty array)."""
    first = numpy.flatnonzero(numpy.concatenate([[True], values[1:] != values[:-1]]))
    return first, numpy.diff(numpy.append(first, len(values)))
