"""The head's inference on a batch, block by block (``predict_blocks``, which
``SpERTHead.predict`` runs).

Each block of whole pairing groups goes through two stages: its entity
logits (pooling table, entity classifier), then the host's decisions (the
objective's decoding, the kept spans, their pairs), then the relation logits
of those pairs. Every stage is split into the host's part, which works out
the indices with numpy (``plan_predict`` of the classifiers) and adds them
to an ``IndexStage``, and the device's part, which only gathers and
multiplies.

Two schedules, with the same computation and the same results:

* interleaved (the CPU's): block after block, entities, decisions,
  relations. A block's table and span features are freed before the next
  block, and nothing waits on a device;
* phased (accelerators'): the entity stage of every block, then the entity
  logits of all blocks come to the host in one copy, then the decisions and
  the relation stage of every block. The indices of each phase move to the
  device in one copy (without waiting), so that a batch costs two waits for
  the device (the entity logits here, the relation logits in the caller's
  decoding), whatever its number of blocks. A block's range-max table is
  built again for its relations when the batch has several blocks, so that
  memory stays bounded by a block's (on a GPU the table costs a few kernels).
"""

from typing import List, NamedTuple, Optional, Tuple, cast

import numpy
import torch

from .. import tuning
from ..pairing import group_token_counts, pairs_within_groups, top_per_group
from .classifiers import EntityPlan, RelationPlan
from .range_max import RangeIndex, inference_table, pool_rows
from .tensors import IndexStage, run_of


class HeadPredictions(NamedTuple):
    """What ``SpERTHead.predict`` returns for a batch.

    entity_logits: (S, E) the logits of every candidate span (on the device).
    entity_labels, entity_scores: (S,) numpy, the objective's decoding of them
        (``decode_entities``: label id, 0 for none, and score).
    pair_heads, pair_tails: (P,) numpy, the pairs classified (indices into
        the candidates).
    relation_logits: (P, R) their logits (on the device).
    """

    entity_logits: torch.Tensor
    entity_labels: numpy.ndarray
    entity_scores: numpy.ndarray
    pair_heads: numpy.ndarray
    pair_tails: numpy.ndarray
    relation_logits: torch.Tensor


class _Block:
    """One block: its spans (block tokens), plans and handles (host) and its
    tensors (device), filled in stage by stage."""

    __slots__ = (
        "ends",
        "entity_logits",
        "entity_plan",
        "groups",
        "heads",
        "index",
        "kept",
        "kept_h",
        "labels",
        "pool_rows_h",
        "relation_logits",
        "relation_plan",
        "s0",
        "scores",
        "span_pool",
        "src",
        "src_run",
        "starts",
        "t0",
        "table",
        "tails",
        "tokens",
        "widths",
    )

    def __init__(self, s0: int, t0: int, starts, ends, groups, widths, index: RangeIndex):
        self.s0, self.t0 = s0, t0
        self.starts, self.ends, self.groups, self.widths = starts, ends, groups, widths
        self.index = index
        self.src_run: Optional[Tuple[int, int]] = None  # the wordpiece rows as one slice
        self.src = self.tokens = -1  # handles: the wordpiece row and token of each alignment entry
        self.entity_plan: Optional[EntityPlan] = None
        self.table: Optional[torch.Tensor] = None
        self.entity_logits: torch.Tensor = cast(torch.Tensor, None)  # (set by the entity stage)
        self.span_pool: Optional[torch.Tensor] = None
        self.labels = self.scores = self.kept = self.heads = self.tails = numpy.zeros((0,), dtype="int64")
        self.kept_h = self.pool_rows_h = -1
        self.relation_plan: Optional[RelationPlan] = None
        self.relation_logits: torch.Tensor = cast(torch.Tensor, None)  # (set by the relation stage)


def predict_blocks(
    head,
    hidden: torch.Tensor,
    *,
    align_rows: numpy.ndarray,
    align_tokens: numpy.ndarray,
    cls_rows: numpy.ndarray,
    token_windows: numpy.ndarray,
    n_tokens: int,
    max_range: int,
    span_starts: numpy.ndarray,
    span_ends: numpy.ndarray,
    span_groups: numpy.ndarray,
    blocks: List[Tuple[int, int, int, int]],
    objective,
    threshold: float,
    entity_thresholds: Optional[numpy.ndarray] = None,
    given_entities: bool = False,
    all_covered: bool = False,
    phased: Optional[bool] = None,
) -> HeadPredictions:
    """The inference of ``SpERTHead.predict`` on a batch, block by block:
    classify all candidate spans, then the pairs of the kept spans of each
    pairing group.

    head (SpERTHead): The head.
    hidden (torch.Tensor): (R, H) wordpiece vectors on the head's device; the
        rest are numpy arrays on the host.
    align_rows, align_tokens (numpy.ndarray): (A,) the token-to-wordpiece
        alignment, ordered by token.
    cls_rows (numpy.ndarray): (n_windows,) the [CLS] row of each transformer
        window.
    token_windows (numpy.ndarray): (N,) the window of each token.
    n_tokens (int): The number of tokens of the batch.
    max_range (int): The longest token range pooled (span or pair context).
    span_starts, span_ends, span_groups (numpy.ndarray): (S,) the candidates
        in global token offsets and their pairing group.
    blocks (List[Tuple[int, int, int, int]]): (first span, end span, first
        token, end token) per block (``Candidates.blocks``).
    objective, threshold: The decoding rule (``objectives.py``): the spans it
        keeps as entities, the best-scoring of each group, are paired.
    entity_thresholds (Optional[numpy.ndarray]): (E + 1,) a threshold per
        label id (-inf for 0, none): a span whose decoded label's score is
        below its label's is no entity; None: the decoding rule alone.
    given_entities (bool): Every candidate is a given entity: all are paired,
        with no bound on their number.
    all_covered (bool): Every token has a wordpiece (no range needs the check
        for tokens without one).
    phased (Optional[bool]): Classify the entities of all blocks, then their
        relations, so that a batch waits for the device twice whatever its
        blocks (the same results; see the module docstring); None: phased on
        an accelerator, interleaved on the CPU (unless ``tuning.PHASED_ON_CPU``).
    RETURNS (HeadPredictions): Logits and decoded entities of all spans, the
        pairs classified and their logits.
    """
    if len(span_starts) == 0:
        entity_logits, relation_logits = head.no_logits(hidden)
        empty = numpy.zeros((0,), dtype="int64")
        return HeadPredictions(entity_logits, empty, numpy.zeros((0,), dtype="float32"), empty, empty, relation_logits)
    device = hidden.device
    if phased is None:
        phased = device.type != "cpu" or tuning.PHASED_ON_CPU
    if len(blocks) == 1 and blocks[0][2] == 0 and blocks[0][3] == n_tokens:
        bounds = [0, len(align_tokens)]  # one block of all tokens (a batch of sentences)
    else:
        bounds = numpy.searchsorted(align_tokens, [t for b in blocks for t in b[2:]]).tolist()
    stage = IndexStage(device, pack=phased)
    run = _Run(head, hidden, stage, cls_rows, objective, threshold, entity_thresholds, given_entities, all_covered)
    parts = []
    for i, (s0, s1, t0, t1) in enumerate(blocks):
        a0, a1 = bounds[2 * i], bounds[2 * i + 1]
        starts, ends = _shift(span_starts[s0:s1], -t0), _shift(span_ends[s0:s1], -t0)
        tokens = _shift(align_tokens[a0:a1], -t0)
        block = _Block(
            s0,
            t0,
            starts,
            ends,
            span_groups[s0:s1],
            numpy.minimum(ends - starts, head.max_width),
            RangeIndex(tokens, t1 - t0, min(max_range, t1 - t0), all_covered),
        )
        rows = align_rows[a0:a1]
        block.src_run = run_of(rows)
        if block.src_run is None:
            block.src = stage.add(rows)
        block.tokens = stage.add(tokens)
        block.entity_plan = run.plan_entities(block, token_windows[t0:t1])
        parts.append(block)
        if not phased:  # interleaved: this block to the end, then the next
            stage.send()
            run.entities(block)
            run.decide(block, _host(block.entity_logits))
            run.plan_relations(block)
            stage.send()
            run.relations(block)
            block.table = block.span_pool = None
    if phased:
        stage.send()
        for block in parts:
            run.entities(block)
            if len(parts) > 1:
                block.table = None  # built again for the relations
        logits = [block.entity_logits for block in parts]
        host = _host(torch.cat(logits) if len(logits) > 1 else logits[0])  # the one wait before the relations
        offset = 0
        for block in parts:
            run.decide(block, host[offset : offset + len(block.starts)])
            offset += len(block.starts)
            run.plan_relations(block)
        stage.send()
        for block in parts:
            run.relations(block)
            block.table = block.span_pool = None  # (one block's table at a time)
    outputs = [run.output(block) for block in parts]
    if len(outputs) == 1:
        return outputs[0]
    return HeadPredictions._make(
        torch.cat(column) if isinstance(column[0], torch.Tensor) else numpy.concatenate(column)
        for column in zip(*outputs)
    )


class _Run:
    """The stages of a batch's blocks (see ``predict_blocks``): ``plan_*``
    and ``decide`` run on the host, ``entities`` and ``relations`` on the
    device (they read the indices through the stage, once it is sent)."""

    def __init__(
        self,
        head,
        hidden: torch.Tensor,
        stage: IndexStage,
        cls_rows: numpy.ndarray,
        objective,
        threshold: float,
        entity_thresholds: Optional[numpy.ndarray],
        given_entities: bool,
        all_covered: bool,
    ):
        self.head = head
        # (the modules once: torch's attribute lookup of a submodule is slow)
        self.entity_classifier = head.entity_classifier
        self.relation_classifier = head.relation_classifier
        self.hidden = hidden
        self.stage = stage
        self.objective = objective
        self.threshold = threshold
        self.entity_thresholds = entity_thresholds
        self.given_entities = given_entities
        self.all_covered = all_covered
        self.mixed = head.mixed_precision
        self.chunk = min(head.pair_batch_size, tuning.SPAN_CHUNK)
        self.width_table = head.width_embedding.weight
        self.n_windows = len(cls_rows)
        self.cls_rows = int(cls_rows[0]) if len(cls_rows) == 1 else stage.add(cls_rows)
        self._cls_vectors: Optional[torch.Tensor] = None

    def cls_vectors(self) -> torch.Tensor:
        """RETURNS (torch.Tensor): (n_windows, H) the [CLS] vector of each
        window (a view for one window: no gather)."""
        if self._cls_vectors is None:
            if self.n_windows == 1:
                self._cls_vectors = self.hidden[self.cls_rows : self.cls_rows + 1]
            else:
                self._cls_vectors = self.hidden.index_select(0, self.stage.tensors[self.cls_rows])
        return self._cls_vectors

    def plan_entities(self, block: _Block, token_windows: numpy.ndarray) -> EntityPlan:
        """The host's part of the entity stage."""
        return self.entity_classifier.plan_predict(
            self.stage,
            block.index,
            self.n_windows,
            self.width_table.shape[0],
            token_windows,
            block.starts,
            block.ends,
            block.widths,
            self.chunk,
        )

    def table(self, block: _Block) -> torch.Tensor:
        """RETURNS (torch.Tensor): The block's range-max table (built, or
        kept from the entity stage)."""
        if block.table is None:
            hidden = self.hidden
            run = block.src_run
            src = hidden[run[0] : run[1]] if run is not None else hidden.index_select(0, self.stage.tensors[block.src])
            index = block.index
            block.table = inference_table(
                hidden, src, self.stage.tensors[block.tokens], index.n_tokens, index.n_levels, self.all_covered
            )
        return block.table

    def entities(self, block: _Block) -> None:
        """The device's part of the entity stage: the block's entity logits
        (float32) and, for one chunk, its span pools."""
        args = (block.entity_plan, self.stage.tensors, self.table(block), block.index.n_tokens, self.cls_vectors())
        if not self.mixed:
            block.entity_logits, block.span_pool = self.entity_classifier.predict(*args, self.width_table)
            return
        with self.head.autocast(self.hidden.device):
            logits, block.span_pool = self.entity_classifier.predict(*args, self.width_table)
        block.entity_logits = logits.float()

    def decide(self, block: _Block, logits: numpy.ndarray) -> None:
        """The host's decisions on the block's entity logits: the objective's
        decoding, the per-label thresholds, the spans kept (at most
        max(10, ceil(ratio x group tokens)) per group, the highest-scoring
        ones) and their pairs within groups."""
        head, starts, ends, groups = self.head, block.starts, block.ends, block.groups
        labels, scores = self.objective.decode_entities(logits, self.threshold)
        if self.entity_thresholds is not None:  # one gather and compare for all spans
            # in the scores' precision, as the global threshold (a Python float) is compared
            cut = self.entity_thresholds.astype(scores.dtype, copy=False)[labels]
            labels = numpy.where(scores >= cut, labels, 0)
        if self.given_entities:
            kept = numpy.arange(len(starts))
        else:
            kept = (labels > 0).nonzero()[0]
            if len(kept) > 10:
                limits = numpy.ceil(group_token_counts(starts, ends, groups) * head.max_pair_entities_per_token)
                kept = top_per_group(kept, scores[kept], groups, numpy.maximum(limits, 10).astype("int64"))
        block.labels, block.scores, block.kept = labels, scores, kept
        block.heads, block.tails = pairs_within_groups(numpy.arange(len(kept)), groups[kept])  # positions in kept

    def plan_relations(self, block: _Block) -> None:
        """The host's part of the relation stage (nothing without pairs)."""
        if len(block.heads) == 0:
            return
        relations, stage, kept = self.relation_classifier, self.stage, block.kept
        k_starts, k_ends = block.starts[kept], block.ends[kept]
        keeps_pool = block.entity_plan is not None and block.entity_plan.keeps_pool
        if keeps_pool or relations.uses_entity_logits:
            block.kept_h = stage.add(kept)
        if not keeps_pool:
            block.pool_rows_h = stage.add(block.index.both_rows(k_starts, k_ends, nonempty=True))
        block.relation_plan = relations.plan_predict(
            stage, block.index, k_starts, k_ends, block.widths[kept], block.heads, block.tails, self.chunk
        )

    def relations(self, block: _Block) -> None:
        """The device's part of the relation stage: the logits (float32) of
        the block's pairs."""
        relations, stage = self.relation_classifier, self.stage
        entity_logits = block.entity_logits
        if block.relation_plan is None:
            block.relation_logits = entity_logits.new_zeros((0, relations.n_outputs))
            return
        table = self.table(block)
        if block.pool_rows_h < 0:
            # (kept from the entity stage: its plan said so)
            span_pool = cast(torch.Tensor, block.span_pool).index_select(0, stage.tensors[block.kept_h])
        else:
            span_pool = pool_rows(table, stage.tensors[block.pool_rows_h])
        k_logits = entity_logits.index_select(0, stage.tensors[block.kept_h]) if relations.uses_entity_logits else None
        args = (block.relation_plan, stage.tensors, table, span_pool, self.width_table, k_logits)
        if not self.mixed:
            block.relation_logits = relations.predict(*args)
            return
        with self.head.autocast(self.hidden.device):
            logits = relations.predict(*args)
        block.relation_logits = logits.float()

    def output(self, block: _Block) -> HeadPredictions:
        """RETURNS (HeadPredictions): The block's, with pairs as indices into
        the batch's candidates."""
        kept, s0 = block.kept, block.s0
        pair_heads, pair_tails = kept[block.heads], kept[block.tails]
        if s0:
            pair_heads, pair_tails = pair_heads + s0, pair_tails + s0
        return HeadPredictions(
            block.entity_logits, block.labels, block.scores, pair_heads, pair_tails, block.relation_logits
        )


def _shift(offsets: numpy.ndarray, by: int) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The offsets moved by ``by`` (no copy for 0)."""
    return offsets + by if by else offsets


def _host(x: torch.Tensor) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The tensor's values on the host (a wait for
    the device's queued work on an accelerator)."""
    return x.cpu().numpy()
