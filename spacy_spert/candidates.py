"""Candidate generation and negative sampling.

Everything here works on token offsets with numpy and has no model state:

* ``enumerate_spans``: every span of 1..max_width tokens inside a segment
  (a doc or a sentence), not starting or ending on a whitespace token.
* ``sample_doc``: SpERT's training sample for one doc: all gold entities
  (also wider than max_width) plus up to N random non-entity spans, all gold
  relations (multi-hot per ordered entity pair) plus up to N "strong" negative
  pairs of gold entities that hold no relation.
* ``SpanBatch``: the candidates of a batch of docs in global token offsets, the
  input of the model (with the training targets when it is a training batch).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy

from spacy.tokens import Doc

Ints1d = numpy.ndarray


def enumerate_spans(
    n_tokens: int,
    max_width: int,
    segment_ids: Optional[Ints1d] = None,
    skip: Optional[Ints1d] = None,
) -> Tuple[Ints1d, Ints1d]:
    """All spans of ``1..max_width`` tokens of a doc, vectorized.

    n_tokens (int): The number of tokens in the doc.
    max_width (int): The widest span, in tokens.
    segment_ids (Optional[Ints1d]): A segment id per token (e.g. the sentence
        index); spans never cross a segment boundary. None: one segment.
    skip (Optional[Ints1d]): A bool per token; spans that start or end on such a
        token (e.g. whitespace) are left out.
    RETURNS (Tuple[Ints1d, Ints1d]): starts and (exclusive) ends, int64, ordered
        by start, then width.
    """
    if n_tokens == 0 or max_width < 1:
        empty = numpy.zeros((0,), dtype="int64")
        return empty, empty.copy()
    starts = numpy.repeat(numpy.arange(n_tokens, dtype="int64"), max_width)
    ends = starts + numpy.tile(numpy.arange(1, max_width + 1, dtype="int64"), n_tokens)
    valid = ends <= n_tokens
    starts, ends = starts[valid], ends[valid]
    keep = numpy.ones(starts.shape, dtype=bool)
    if segment_ids is not None:
        keep &= segment_ids[starts] == segment_ids[ends - 1]
    if skip is not None:
        keep &= ~skip[starts] & ~skip[ends - 1]
    return starts[keep], ends[keep]


def max_iou(starts: Ints1d, ends: Ints1d, gold_starts: Ints1d, gold_ends: Ints1d) -> numpy.ndarray:
    """For each span, the largest intersection-over-union (in tokens) with any
    gold span (0.0 when there is no gold span or no overlap).

    RETURNS (numpy.ndarray): float32 array with one value per span.
    """
    if len(starts) == 0 or len(gold_starts) == 0:
        return numpy.zeros((len(starts),), dtype="float32")
    inter = numpy.minimum(ends[:, None], gold_ends[None, :]) - numpy.maximum(
        starts[:, None], gold_starts[None, :]
    )
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
    """

    starts: Ints1d
    ends: Ints1d
    entity_labels: Ints1d
    pair_heads: Ints1d
    pair_tails: Ints1d
    relation_labels: numpy.ndarray
    entity_iou: numpy.ndarray


def sample_doc(
    n_tokens: int,
    gold_entities: Sequence[Tuple[int, int, int]],
    gold_relations: Sequence[Tuple[int, int, int]],
    *,
    n_relation_labels: int,
    max_width: int,
    neg_entity_count: int,
    neg_relation_count: int,
    rng: numpy.random.Generator,
    symmetric: Set[int] = frozenset(),
    segment_ids: Optional[Ints1d] = None,
    skip: Optional[Ints1d] = None,
    pair_segment_ids: Optional[Ints1d] = None,
) -> DocSample:
    """Draw SpERT's training sample for one doc.

    n_tokens (int): The number of tokens.
    gold_entities: (start, end, label_id) per gold entity, label_id >= 1. Two
        entities with the same boundaries are one sample (the first label wins).
    gold_relations: (head, tail, relation_id) per gold relation; head and tail
        index ``gold_entities``; relation_id in 0..n_relation_labels-1.
    n_relation_labels (int): The number of relation types.
    max_width (int): The widest candidate span.
    neg_entity_count (int): Up to this many non-entity spans are drawn.
    neg_relation_count (int): Up to this many entity pairs without a relation.
    rng (numpy.random.Generator): The random generator.
    symmetric (Set[int]): Symmetric relation ids: the reverse of such a gold
        pair is not used as a negative.
    segment_ids, skip: As in ``enumerate_spans``.
    pair_segment_ids (Optional[Ints1d]): ``pair_segments`` of the doc: strong
        negative pairs are drawn only among entities whose first tokens share
        it, as inference pairs only those (None: all pairs).
    RETURNS (DocSample): The sample.
    """
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
    cand_starts, cand_ends = enumerate_spans(n_tokens, max_width, segment_ids, skip)
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
    entity_labels = numpy.concatenate(
        [numpy.asarray(labels, dtype="int64"), numpy.zeros((n_neg,), dtype="int64")]
    )

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
    pair_seg = pair_segment_ids[gold_starts] if pair_segment_ids is not None else numpy.zeros((n_pos,), "int64")
    neg_pairs = [
        (h, t)
        for h in range(n_pos)
        for t in range(n_pos)
        if h != t and pair_seg[h] == pair_seg[t] and (h, t) not in pair_rows and (t, h) not in symmetric_pairs
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
class SpanBatch:
    """The span candidates (and, for training, targets) of a batch of docs.

    Offsets are global: token i of doc d is ``doc_offsets[d] + i``.

    doc_offsets: (n_docs + 1,) token offset of each doc.
    starts, ends: (S,) span boundaries (end exclusive).
    segments: (S,) a segment id per span; relation candidates at inference are
        the pairs of kept spans with the same segment id.
    pair_heads, pair_tails: (P,) indices into the spans (training only).
    entity_labels: (S,) targets (0: none), relation_labels: (P, R) multi-hot,
        entity_iou: (S,) max IoU with a gold entity (training only).
    threshold: the decoding threshold used at inference.
    """

    doc_offsets: Ints1d
    starts: Ints1d
    ends: Ints1d
    segments: Ints1d
    pair_heads: Optional[Ints1d] = None
    pair_tails: Optional[Ints1d] = None
    entity_labels: Optional[Ints1d] = None
    relation_labels: Optional[numpy.ndarray] = None
    entity_iou: Optional[numpy.ndarray] = None
    threshold: float = 0.5

    @property
    def is_training(self) -> bool:
        return self.pair_heads is not None

    def max_range(self) -> int:
        """The longest token range the model may pool: the longest doc in
        training (gold pairs may lie anywhere in a doc); at inference the
        widest pairing segment (max end - min start of its spans), which holds
        every span and every context between two of its spans."""
        if self.is_training or len(self.starts) == 0:
            return max(1, int(numpy.diff(self.doc_offsets).max(initial=1)))
        _, _, tok_lo, tok_hi = self._segment_extents()
        return max(1, int((tok_hi - tok_lo).max()))

    def _segment_extents(self) -> Tuple[Ints1d, Ints1d, Ints1d, Ints1d]:
        """Per segment of an inference batch (spans ordered by segment, as
        ``build_inference_batch`` makes them): its first and end span index,
        and the first and end token its spans cover."""
        n = len(self.starts)
        if (numpy.diff(self.segments) < 0).any():
            raise ValueError("SpanBatch needs inference spans ordered by segment")
        seg_lo = numpy.concatenate([[0], numpy.flatnonzero(numpy.diff(self.segments)) + 1])
        seg_hi = numpy.concatenate([seg_lo[1:], [n]])
        return seg_lo, seg_hi, numpy.minimum.reduceat(self.starts, seg_lo), numpy.maximum.reduceat(self.ends, seg_lo)

    def blocks(self, max_tokens: int) -> List[Tuple[int, int, int, int]]:
        """Consecutive groups of whole segments for inference, each covering
        at most ``max_tokens`` tokens (or one segment, if it alone covers
        more). Needs spans ordered by segment, as ``build_inference_batch``
        makes them.

        RETURNS (List[Tuple[int, int, int, int]]): (first span, end span, first
            token, end token) per block; the token range holds all its spans.
        """
        if len(self.starts) == 0:
            return []
        seg_lo, seg_hi, tok_lo, tok_hi = self._segment_extents()
        blocks: List[List[int]] = []
        for i in range(len(seg_lo)):
            if blocks and max(blocks[-1][3], tok_hi[i]) - blocks[-1][2] <= max_tokens:
                blocks[-1][1] = int(seg_hi[i])
                blocks[-1][3] = max(blocks[-1][3], int(tok_hi[i]))
            else:
                blocks.append([int(seg_lo[i]), int(seg_hi[i]), int(tok_lo[i]), int(tok_hi[i])])
        return [tuple(b) for b in blocks]

    def span_docs(self) -> Ints1d:
        """The doc index of each span."""
        return numpy.searchsorted(self.doc_offsets, self.starts, side="right") - 1


def doc_segments(doc: Doc, scope: str) -> Optional[Ints1d]:
    """Segment id per token: None for ``scope="doc"``, the sentence index for
    ``scope="sentence"`` (when the doc has sentence boundaries). Candidate
    spans never cross a segment boundary."""
    if scope == "doc" or len(doc) == 0:
        return None
    if scope != "sentence":
        raise ValueError(f"Unknown candidate scope '{scope}': use 'doc' or 'sentence'.")
    if not (doc.has_annotation("SENT_START") or doc.has_annotation("DEP")):
        return None
    starts = numpy.asarray([t.is_sent_start for t in doc], dtype=bool)
    starts[0] = True
    return numpy.cumsum(starts) - 1


def pair_segments(n_tokens: int, segment_ids: Optional[Ints1d], max_length: int) -> Ints1d:
    """The pairing segment of each token: relation candidates are pairs of
    spans whose first tokens share it. It is the segment (``doc_segments``)
    cut into consecutive pieces of at most ``max_length`` tokens (0: no cut),
    so that the pairs of a long sentence or of text without sentence
    boundaries grow linearly with its length. A span may end in the next
    piece of its segment: cutting loses no entity, only pairs across a cut.

    n_tokens (int): The number of tokens of the doc.
    segment_ids (Optional[Ints1d]): ``doc_segments`` of the doc (None: one).
    max_length (int): The longest piece, in tokens; 0 for no limit.
    RETURNS (Ints1d): (n_tokens,) int64 ids, 0, 1, ... in token order.
    """
    if segment_ids is None:
        segment_ids = numpy.zeros((n_tokens,), dtype="int64")
    if n_tokens == 0 or max_length <= 0:
        return numpy.asarray(segment_ids, dtype="int64")
    new_segment = numpy.ones((n_tokens,), dtype=bool)
    new_segment[1:] = segment_ids[1:] != segment_ids[:-1]
    first = numpy.maximum.accumulate(numpy.where(new_segment, numpy.arange(n_tokens), 0))
    position = numpy.arange(n_tokens) - first
    new_piece = new_segment | (position % max_length == 0)
    return (numpy.cumsum(new_piece) - 1).astype("int64")


def whitespace_mask(doc: Doc) -> Ints1d:
    """A bool per token: True for whitespace-only tokens."""
    return numpy.asarray([t.is_space for t in doc], dtype=bool)


def doc_offsets(docs: Sequence[Doc]) -> Ints1d:
    """RETURNS (Ints1d): (n_docs + 1,) the global offset of each doc's first
    token, and the total number of tokens last."""
    return numpy.cumsum([0] + [len(doc) for doc in docs], dtype="int64")


def build_inference_batch(
    docs: Sequence[Doc], max_width: int, scope: str = "doc", threshold: float = 0.5, max_segment_length: int = 0
) -> SpanBatch:
    """All candidate spans of a batch of docs.

    docs (Sequence[Doc]): The docs.
    max_width (int): The widest candidate span.
    scope (str): "doc" or "sentence": where candidates and pairs may reach.
    threshold (float): The decoding threshold passed to the model.
    max_segment_length (int): Pairs only within pieces of at most this many
        tokens of a segment (``pair_segments``); 0: no limit.
    RETURNS (SpanBatch): The candidates in global token offsets.
    """
    offsets = doc_offsets(docs)
    all_starts, all_ends, all_segments = [], [], []
    n_segments = 0
    for i, doc in enumerate(docs):
        segment_ids = doc_segments(doc, scope)
        starts, ends = enumerate_spans(len(doc), max_width, segment_ids, whitespace_mask(doc))
        seg = pair_segments(len(doc), segment_ids, max_segment_length)[starts]
        all_starts.append(starts + offsets[i])
        all_ends.append(ends + offsets[i])
        all_segments.append(seg + n_segments)
        n_segments += int(seg.max()) + 1 if len(seg) else 1
    return SpanBatch(
        doc_offsets=offsets,
        starts=_concat(all_starts, "int64"),
        ends=_concat(all_ends, "int64"),
        segments=_concat(all_segments, "int64"),
        threshold=threshold,
    )


def build_training_batch(docs: Sequence[Doc], samples: Sequence[DocSample]) -> SpanBatch:
    """Concatenate per-doc training samples into one batch.

    docs (Sequence[Doc]): The predicted docs (for their lengths).
    samples (Sequence[DocSample]): One sample per doc.
    RETURNS (SpanBatch): The batch with targets.
    """
    offsets = doc_offsets(docs)
    span_offsets = numpy.cumsum([0] + [len(s.starts) for s in samples])
    n_rel = samples[0].relation_labels.shape[1] if samples else 0
    return SpanBatch(
        doc_offsets=offsets,
        starts=_concat([s.starts + offsets[i] for i, s in enumerate(samples)], "int64"),
        ends=_concat([s.ends + offsets[i] for i, s in enumerate(samples)], "int64"),
        segments=_concat([numpy.full(len(s.starts), i) for i, s in enumerate(samples)], "int64"),
        pair_heads=_concat([s.pair_heads + span_offsets[i] for i, s in enumerate(samples)], "int64"),
        pair_tails=_concat([s.pair_tails + span_offsets[i] for i, s in enumerate(samples)], "int64"),
        entity_labels=_concat([s.entity_labels for s in samples], "int64"),
        relation_labels=(
            numpy.concatenate([s.relation_labels for s in samples])
            if samples
            else numpy.zeros((0, n_rel), dtype="float32")
        ),
        entity_iou=_concat([s.entity_iou for s in samples], "float32"),
    )


def _concat(arrays: List[numpy.ndarray], dtype: str) -> numpy.ndarray:
    if not arrays:
        return numpy.zeros((0,), dtype=dtype)
    return numpy.concatenate(arrays).astype(dtype, copy=False)
