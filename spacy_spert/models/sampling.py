"""Negative sampling: SpERT's training sample of a doc, and the batch of
samples that is the model's input in training.

* ``sample_doc``: SpERT's training sample for one doc: all gold entities
  (also wider than max_width) plus up to N random non-entity candidates (of
  the suggester's, ``suggesters.DocCandidates``), all gold relations
  (multi-hot per ordered entity pair) plus up to N "strong" negative pairs of
  gold entities that hold no relation.
* ``TrainingBatch``: the samples of a batch of docs in global token offsets.
* ``max_iou``: each span's overlap with the gold entities (SpERT.MT's
  IoU-scaled entity loss).

Everything here works on token offsets with numpy and has no model state.
"""

from dataclasses import dataclass
from typing import AbstractSet, Dict, List, Sequence, Set, Tuple

import numpy
from spacy.tokens import Doc

from .suggesters import DocCandidates, concat_arrays, doc_offsets

Ints1d = numpy.ndarray


def max_iou(starts: Ints1d, ends: Ints1d, gold_starts: Ints1d, gold_ends: Ints1d) -> numpy.ndarray:
    """For each span, the largest intersection-over-union (in tokens) with any
    gold span (0.0 when there is no gold span or no overlap).

    RETURNS (numpy.ndarray): float32 array with one value per span.
    """
    if len(starts) == 0 or len(gold_starts) == 0:
        return numpy.zeros((len(starts),), dtype="float32")
    inter = numpy.minimum(ends[:, None], gold_ends[None, :]) - numpy.maximum(starts[:, None], gold_starts[None, :])
    inter = numpy.clip(inter, 0, None)
    union = (ends - starts)[:, None] + (gold_ends - gold_starts)[None, :] - inter
    return (inter / union).max(axis=1).astype("float32")


@dataclass
class DocSample:
    """The training sample of one doc, in the doc's token offsets.

    starts, ends: the sampled spans (gold entities first).
    entity_labels: the label id per span (0: no entity, i + 1: label i).
    pair_heads, pair_tails: indices into the spans for each relation sample.
    relation_labels: a multi-hot row (float32) per relation sample.
    entity_iou: the largest IoU of each span with a gold entity.
    """

    starts: Ints1d
    ends: Ints1d
    entity_labels: Ints1d
    pair_heads: Ints1d
    pair_tails: Ints1d
    relation_labels: numpy.ndarray
    entity_iou: numpy.ndarray


def sample_doc(
    candidates: DocCandidates,
    gold_entities: Sequence[Tuple[int, int, int]],
    gold_relations: Sequence[Tuple[int, int, int]],
    *,
    n_relation_labels: int,
    neg_entity_count: int,
    neg_relation_count: int,
    rng: numpy.random.Generator,
    symmetric: AbstractSet[int] = frozenset(),
) -> DocSample:
    """Draw SpERT's training sample for one doc.

    candidates (DocCandidates): The doc's candidates (from the suggester):
        negative entities are drawn among them, and strong negative pairs only
        among entities whose first tokens share a pairing group, as inference
        pairs only those.
    gold_entities: (start, end, label_id) per gold entity, label_id >= 1. Two
        entities with the same boundaries are one sample (the first label wins).
    gold_relations: (head, tail, relation_id) per gold relation; head and tail
        index ``gold_entities``; relation_id in 0..n_relation_labels-1.
    n_relation_labels (int): The number of relation types.
    neg_entity_count (int): Up to this many non-entity spans are drawn.
    neg_relation_count (int): Up to this many entity pairs without a relation.
    rng (numpy.random.Generator): The random generator.
    symmetric (Set[int]): Symmetric relation ids: the reverse of such a gold
        pair is not used as a negative.
    RETURNS (DocSample): The sample.
    """
    n_tokens = len(candidates.token_groups)
    span_index: Dict[Tuple[int, int], int] = {}
    starts: List[int] = []
    ends: List[int] = []
    labels: List[int] = []
    entity_to_span: List[int] = []
    for start, end, label in gold_entities:
        key = (int(start), int(end))
        if key not in span_index:
            span_index[key] = len(starts)
            starts.append(key[0])
            ends.append(key[1])
            labels.append(int(label))
        entity_to_span.append(span_index[key])
    n_pos = len(starts)
    gold_starts = numpy.asarray(starts, dtype="int64")
    gold_ends = numpy.asarray(ends, dtype="int64")

    # Negative entities: candidate spans that are not gold entities.
    cand_starts, cand_ends = candidates.starts, candidates.ends
    if n_pos and len(cand_starts):
        is_gold = numpy.isin(cand_starts * (n_tokens + 1) + cand_ends, gold_starts * (n_tokens + 1) + gold_ends)
        cand_starts, cand_ends = cand_starts[~is_gold], cand_ends[~is_gold]
    n_neg = min(neg_entity_count, len(cand_starts))
    if n_neg:
        chosen = rng.choice(len(cand_starts), size=n_neg, replace=False)
        chosen.sort()
        neg_starts, neg_ends = cand_starts[chosen], cand_ends[chosen]
    else:
        neg_starts = neg_ends = numpy.zeros((0,), dtype="int64")
    all_starts = numpy.concatenate([gold_starts, neg_starts])
    all_ends = numpy.concatenate([gold_ends, neg_ends])
    entity_labels = numpy.concatenate([numpy.asarray(labels, dtype="int64"), numpy.zeros((n_neg,), dtype="int64")])

    # Positive relations: one multi-hot row per ordered pair of gold spans.
    pair_rows: Dict[Tuple[int, int], numpy.ndarray] = {}
    symmetric_pairs: Set[Tuple[int, int]] = set()
    for head, tail, rel in gold_relations:
        pair = (entity_to_span[head], entity_to_span[tail])
        if pair[0] == pair[1]:
            continue
        row = pair_rows.setdefault(pair, numpy.zeros((n_relation_labels,), dtype="float32"))
        row[rel] = 1.0
        if rel in symmetric:
            symmetric_pairs.add(pair)
    # Strong negatives: ordered pairs of gold spans with no relation.
    group = candidates.token_groups[gold_starts]
    neg_pairs = [
        (h, t)
        for h in range(n_pos)
        for t in range(n_pos)
        if h != t and group[h] == group[t] and (h, t) not in pair_rows and (t, h) not in symmetric_pairs
    ]
    n_neg_rel = min(neg_relation_count, len(neg_pairs))
    if n_neg_rel:
        chosen = numpy.sort(rng.choice(len(neg_pairs), size=n_neg_rel, replace=False))
        neg_pairs = [neg_pairs[i] for i in chosen]
    else:
        neg_pairs = []
    pairs = list(pair_rows.keys()) + neg_pairs
    rel_labels = numpy.zeros((len(pairs), n_relation_labels), dtype="float32")
    for i, pair in enumerate(pair_rows):
        rel_labels[i] = pair_rows[pair]
    return DocSample(
        starts=all_starts,
        ends=all_ends,
        entity_labels=entity_labels,
        pair_heads=numpy.asarray([p[0] for p in pairs], dtype="int64"),
        pair_tails=numpy.asarray([p[1] for p in pairs], dtype="int64"),
        relation_labels=rel_labels,
        entity_iou=max_iou(all_starts, all_ends, gold_starts, gold_ends),
    )


@dataclass
class TrainingBatch:
    """The sampled spans and pairs of a batch of docs with their targets, the
    model's input in training. Offsets are global, as in ``Candidates``.

    doc_offsets: (n_docs + 1,) token offset of each doc.
    starts, ends: (S,) span boundaries (end exclusive).
    pair_heads, pair_tails: (P,) indices into the spans.
    entity_labels: (S,) targets (0: none); relation_labels: (P, R) multi-hot;
    entity_iou: (S,) max IoU with a gold entity.
    """

    doc_offsets: Ints1d
    starts: Ints1d
    ends: Ints1d
    pair_heads: Ints1d
    pair_tails: Ints1d
    entity_labels: Ints1d
    relation_labels: numpy.ndarray
    entity_iou: numpy.ndarray

    @classmethod
    def from_samples(cls, docs: Sequence[Doc], samples: Sequence[DocSample]) -> "TrainingBatch":
        """Concatenate per-doc samples into one batch.

        docs (Sequence[Doc]): The predicted docs (for their lengths).
        samples (Sequence[DocSample]): One sample per doc.
        RETURNS (TrainingBatch): The batch.
        """
        offsets = doc_offsets(docs)
        span_offsets = numpy.cumsum([0] + [len(s.starts) for s in samples])
        n_rel = samples[0].relation_labels.shape[1] if samples else 0
        return cls(
            doc_offsets=offsets,
            starts=concat_arrays([s.starts + offsets[i] for i, s in enumerate(samples)], "int64"),
            ends=concat_arrays([s.ends + offsets[i] for i, s in enumerate(samples)], "int64"),
            pair_heads=concat_arrays([s.pair_heads + span_offsets[i] for i, s in enumerate(samples)], "int64"),
            pair_tails=concat_arrays([s.pair_tails + span_offsets[i] for i, s in enumerate(samples)], "int64"),
            entity_labels=concat_arrays([s.entity_labels for s in samples], "int64"),
            relation_labels=(
                numpy.concatenate([s.relation_labels for s in samples])
                if samples
                else numpy.zeros((0, n_rel), dtype="float32")
            ),
            entity_iou=concat_arrays([s.entity_iou for s in samples], "float32"),
        )

    def max_range(self) -> int:
        """The longest token range the model may pool: the longest doc (gold
        pairs may lie anywhere in a doc)."""
        return max(1, int(numpy.diff(self.doc_offsets).max(initial=1)))
