"""The stage classifiers of the head, one small module each.

* ``EntityClassifier``: [CLS ; span max-pool ; width embedding] -> entity logits.
* ``RelationClassifier``: [context ; head ; tail ; head width ; tail width
  (; head and tail entity logits)] -> relation logits.

Each classifier holds its training computation (``forward``: one linear map
of the concatenated, dropped-out input) beside one factorised inference
computation (``predict``: the same linear map split by input columns, so that
no (spans, 2H + W) or (pairs, 3H + ...) input is ever built; the parts are
projected once per window, per width or per kept span), split in turn into
the host's part (``plan_predict``: which rows to read, numpy indices that go
to the device with the rest of the phase's, ``tensors.IndexStage``) and the
device's (``predict``: gathers and matrix products only). The entity stage
takes the span part of a long block width by width (``_span_part_by_width``):
without it the head takes 15-25% longer on batches of sentences and on long
docs. (A third path, for a block's few pairs from their concatenated input,
saved no more than 2-7% of the head's time on single sentences and is gone.)
A test checks that these agree with the training computation.
"""

from typing import List, NamedTuple, Optional, Tuple, cast

import numpy
import torch
from torch.nn.functional import linear

from .. import tuning
from .range_max import RangeIndex, RangeMax, pool_rows
from .tensors import IndexStage


class _StageClassifier(torch.nn.Module):
    """The linear map of one stage (entity or relation).

    SpERT: one linear layer with bias (``classes``). SpERT.MT
    (``identification=True``): column 0 of the logits comes from
    ``identifier`` (one logit, with bias), columns 1.. from ``classes``, a
    bias-free dot product s . W_c. Dropout is applied to the concatenated
    input in training.
    """

    def __init__(self, in_width: int, n_outputs: int, identification: bool, dropout: float):
        super().__init__()
        self.identification = identification
        if identification:
            self.identifier = torch.nn.Linear(in_width, 1)
            self.classes = torch.nn.Linear(in_width, n_outputs - 1, bias=False)
        else:
            self.classes = torch.nn.Linear(in_width, n_outputs)
        self.dropout = torch.nn.Dropout(dropout)
        self.n_outputs = n_outputs

    def classify(self, parts: List[torch.Tensor]) -> torch.Tensor:
        """Training: the logits of the concatenated, dropped-out input."""
        x = self.dropout(torch.cat(parts, dim=1))
        if self.identification:
            return torch.cat([self.identifier(x), self.classes(x)], dim=1)
        return self.classes(x)

    def weight_and_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The stage as one linear map: weight (outputs, inputs) and bias
        (outputs,), the identification row first when there is one."""
        if not self.identification:
            classes = self.classes
            return classes.weight, classes.bias
        bias = self.identifier.bias.new_zeros((self.classes.weight.shape[0],))
        return torch.cat([self.identifier.weight, self.classes.weight]), torch.cat([self.identifier.bias, bias])


class EntityClassifier(_StageClassifier):
    """Entity logits of spans from [CLS ; span max-pool ; width embedding].

    hidden_width (int): H; width_size (int): W, the width embedding size.
    n_outputs (int): Columns of the entity logits.
    identification (bool): SpERT.MT's identification head (see above).
    dropout (float): Dropout on the input in training.
    """

    def __init__(self, hidden_width: int, width_size: int, n_outputs: int, identification: bool, dropout: float):
        super().__init__(2 * hidden_width + width_size, n_outputs, identification, dropout)
        self.hidden_width = hidden_width

    def forward(self, cls: torch.Tensor, span_pool: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        """Training: (S, n_outputs) logits from (S, H) [CLS] vectors, (S, H)
        span max-pools and (S, W) width embeddings."""
        return self.classify([cls, span_pool, widths])

    def plan_predict(
        self,
        stage: IndexStage,
        index: RangeIndex,
        n_windows: int,
        n_widths: int,
        token_windows: numpy.ndarray,
        starts: numpy.ndarray,
        ends: numpy.ndarray,
        widths: numpy.ndarray,
        chunk: int,
    ) -> "EntityPlan":
        """Inference, the host's part: the indices that ``predict`` reads,
        added to the stage.

        stage (IndexStage): Where the indices go (moved to the device with
            the other indices of the phase).
        index (RangeIndex): The block's pooling rows.
        n_windows (int): The batch's transformer windows; n_widths (int): rows
            of the width embedding table.
        token_windows (numpy.ndarray): (N,) the window of each token.
        starts, ends (numpy.ndarray): (S,) the spans, in the block's tokens.
        widths (numpy.ndarray): (S,) the width embedding row of each span.
        chunk (int): Spans per chunk.
        RETURNS (EntityPlan): The plan for ``predict``.
        """
        one_window = n_windows == 1
        # the row of a span's [CLS] and width part: its width, or window * n_widths + width
        fixed_rows = widths if one_window else token_windows[starts] * n_widths + widths
        if index.n_tokens >= tuning.WIDTH_SLICES_MIN_TOKENS:
            lengths = ends - starts
            longest = int(lengths.max())
            if longest <= tuning.WIDTH_SLICES_MAX_WIDTH and index.all_covering(starts, ends):
                span_rows = _width_rows(index.n_tokens, longest, starts, lengths)
                return EntityPlan(one_window, longest, stage.add(span_rows), stage.add(fixed_rows), [])
        chunks = [
            (
                stage.add(index.both_rows(starts[i : i + chunk], ends[i : i + chunk], nonempty=True)),
                stage.add(fixed_rows[i : i + chunk]),
            )
            for i in range(0, len(starts), chunk)
        ]
        return EntityPlan(one_window, 0, -1, -1, chunks)

    def predict(
        self,
        plan: "EntityPlan",
        indices: List[torch.Tensor],
        table: torch.Tensor,
        n_tokens: int,
        cls_vectors: torch.Tensor,
        width_table: torch.Tensor,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Inference: the logits of ``forward`` (without dropout), computed
        by parts: the [CLS] part once per window and the width part (with the
        bias) once per width, looked up per span from one small table; the
        span part per span, in chunks of spans, or, for a long block of
        narrow spans, width by width (``_span_part_by_width``). Only device
        work: the indices come from ``plan_predict``, through the stage's indices.

        plan (EntityPlan): From ``plan_predict``.
        indices (List[torch.Tensor]): The stage's indices on the device
            (``IndexStage.tensors``, once sent), read at the plan's handles.
        table (torch.Tensor): The block's range-max table (``inference_table``).
        n_tokens (int): The block's tokens.
        cls_vectors (torch.Tensor): (n_windows, H) the [CLS] vectors of the
            batch's transformer windows.
        width_table (torch.Tensor): (n_widths, W) the width embeddings.
        RETURNS (Tuple[torch.Tensor, Optional[torch.Tensor]]): (S, n_outputs)
            logits, and the (S, H) span pools when all spans fit one chunk
            (``plan.keeps_pool``; else None: the caller pools the spans it
            needs again).
        """
        weight, bias = self.weight_and_bias()
        h = self.hidden_width
        # fixed: the [CLS] and width parts (with the bias) of the logits
        if plan.one_window:
            fixed = torch.addmm(linear(cls_vectors, weight[:, :h], bias), width_table, weight[:, 2 * h :].t())
        else:
            cls_part = linear(cls_vectors, weight[:, :h])
            width_part = linear(width_table, weight[:, 2 * h :], bias)
            fixed = (cls_part.unsqueeze(1) + width_part.unsqueeze(0)).reshape(-1, weight.shape[0])
        span_weight = weight[:, h : 2 * h].t()
        if plan.longest:
            span_part = _span_part_by_width(table, n_tokens, plan.longest, span_weight)
            return span_part.index_select(0, indices[plan.span_rows]) + fixed.index_select(
                0, indices[plan.fixed_rows]
            ), None
        logits, pooled = [], None
        for rows, fixed_rows in plan.chunks:
            pooled = pool_rows(table, indices[rows])
            logits.append(torch.addmm(fixed.index_select(0, indices[fixed_rows]), pooled, span_weight))
        if len(logits) == 1:
            return logits[0], pooled
        return torch.cat(logits), None


class EntityPlan(NamedTuple):
    """What ``EntityClassifier.predict`` reads for a block (handles into an
    ``IndexStage``).

    one_window: The batch has one transformer window.
    longest: > 0: the span part is taken width by width up to this width,
        span_rows and fixed_rows (handles) the rows of each span in it and
        in the fixed part; 0: per chunk.
    chunks: Per chunk of spans: the handles of its pooling rows (a, then b)
        and of its rows in the fixed part.
    """

    one_window: bool
    longest: int
    span_rows: int
    fixed_rows: int
    chunks: List[Tuple[int, int]]

    @property
    def keeps_pool(self) -> bool:
        """RETURNS (bool): ``predict`` returns the span pools (one chunk)."""
        return not self.longest and len(self.chunks) == 1


class RelationClassifier(_StageClassifier):
    """Relation logits of span pairs from [context ; head ; tail ; head width ;
    tail width (; head entity logits ; tail entity logits)]; the context is the
    max-pool of the tokens between the two spans (zeros if they touch or
    overlap).

    hidden_width (int): H; width_size (int): W.
    n_outputs (int): Columns of the relation logits.
    n_entity_outputs (int): Columns of the entity logits, appended for both
        spans when ``entity_logits`` (SpERT.MT), else 0.
    identification (bool), dropout (float): As for ``EntityClassifier``.
    """

    def __init__(
        self,
        hidden_width: int,
        width_size: int,
        n_outputs: int,
        n_entity_outputs: int,
        identification: bool,
        dropout: float,
    ):
        in_width = 3 * hidden_width + 2 * width_size + 2 * n_entity_outputs
        super().__init__(in_width, n_outputs, identification, dropout)
        self.uses_entity_logits = n_entity_outputs > 0
        # the column widths of the input parts, in order
        self.sizes = [hidden_width] * 3 + [width_size] * 2 + [n_entity_outputs] * (2 if self.uses_entity_logits else 0)

    def forward(
        self,
        pool: RangeMax,
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_pool: torch.Tensor,
        widths: torch.Tensor,
        entity_logits: torch.Tensor,
        heads: torch.Tensor,
        tails: torch.Tensor,
    ) -> torch.Tensor:
        """Training: (P, n_outputs) logits of the pairs (heads[i], tails[i]),
        indices into the spans given by starts, ends and their (S, H) pools,
        (S, W) width embeddings and (S, E) entity logits."""
        ctx_start = torch.minimum(ends.index_select(0, heads), ends.index_select(0, tails))
        ctx_end = torch.maximum(starts.index_select(0, heads), starts.index_select(0, tails))
        parts = [
            pool(ctx_start, ctx_end),
            span_pool.index_select(0, heads),
            span_pool.index_select(0, tails),
            widths.index_select(0, heads),
            widths.index_select(0, tails),
        ]
        if self.uses_entity_logits:
            parts += [entity_logits.index_select(0, heads), entity_logits.index_select(0, tails)]
        return self.classify(parts)

    def plan_predict(
        self,
        stage: IndexStage,
        index: RangeIndex,
        starts: numpy.ndarray,
        ends: numpy.ndarray,
        widths: numpy.ndarray,
        heads: numpy.ndarray,
        tails: numpy.ndarray,
        chunk: int,
    ) -> "RelationPlan":
        """Inference, the host's part: the indices that ``predict`` reads,
        added to the stage.

        stage (IndexStage): Where the indices go.
        index (RangeIndex): The block's pooling rows.
        starts, ends (numpy.ndarray): (K,) the spans, in the block's tokens.
        widths (numpy.ndarray): (K,) the width embedding row of each span.
        heads, tails (numpy.ndarray): (P,) the pairs, positions in the spans.
        chunk (int): Pairs per chunk.
        RETURNS (RelationPlan): The plan for ``predict``.
        """
        chunks = []
        for i in range(0, len(heads), chunk):
            h, t = heads[i : i + chunk], tails[i : i + chunk]
            context = index.both_rows(numpy.minimum(ends[h], ends[t]), numpy.maximum(starts[h], starts[t]))
            chunks.append((stage.add(h), stage.add(t), stage.add(context)))
        return RelationPlan(stage.add(widths), chunks)

    def predict(
        self,
        plan: "RelationPlan",
        indices: List[torch.Tensor],
        table: torch.Tensor,
        span_pool: torch.Tensor,
        width_table: torch.Tensor,
        entity_logits: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Inference: the logits of ``forward`` (without dropout), computed
        by parts: the head and tail parts once per span (their width parts
        and the bias looked up per width), and per pair only the context, in
        chunks of pairs. Only device work: the indices come from
        ``plan_predict``, through the stage's indices.

        plan (RelationPlan): From ``plan_predict``.
        indices (List[torch.Tensor]): The stage's indices on the device, read
            at the plan's handles.
        table (torch.Tensor): The block's range-max table.
        span_pool (torch.Tensor): (K, H) the spans' max-pools.
        width_table (torch.Tensor): (n_widths, W) the width embeddings.
        entity_logits (Optional[torch.Tensor]): (K, E) their entity logits
            (used when the stage takes them).
        RETURNS (torch.Tensor): (P, n_outputs) logits.
        """
        if not plan.chunks:
            return span_pool.new_zeros((0, self.n_outputs))
        weight, bias = self.weight_and_bias()
        w_ctx, w_head, w_tail, w_head_width, w_tail_width, *w_logits = torch.split(weight, self.sizes, dim=1)
        widths = indices[plan.widths]
        head_part = torch.addmm(linear(width_table, w_head_width, bias).index_select(0, widths), span_pool, w_head.t())
        tail_part = torch.addmm(linear(width_table, w_tail_width).index_select(0, widths), span_pool, w_tail.t())
        if self.uses_entity_logits:
            logits = cast(torch.Tensor, entity_logits)  # given whenever the stage uses them
            head_part = torch.addmm(head_part, logits, w_logits[0].t())
            tail_part = torch.addmm(tail_part, logits, w_logits[1].t())
        pieces = []
        for h, t, context in plan.chunks:
            pair_part = head_part.index_select(0, indices[h]) + tail_part.index_select(0, indices[t])
            pieces.append(torch.addmm(pair_part, pool_rows(table, indices[context]), w_ctx.t()))
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


class RelationPlan(NamedTuple):
    """What ``RelationClassifier.predict`` reads for a block (handles into
    an ``IndexStage``).

    widths: The width embedding row of each span.
    chunks: Per chunk of pairs: the handles of its heads, its tails and its
        contexts' pooling rows (a, then b).
    """

    widths: int
    chunks: List[Tuple[int, int, int]]


def _span_part_by_width(table: torch.Tensor, n: int, max_width: int, span_weight: torch.Tensor) -> torch.Tensor:
    """The span part of the entity logits (the span max-pool times its
    weights) of every span of 1..max_width tokens of the pool's tokens,
    width after width: the spans of width w starting at 0, 1, ... pool to the
    maximum of two contiguous slices of one table level (a whole level for
    w = 2**k), so no span vector is gathered and only one width's vectors
    exist at a time. Rows: width 1 (starts 0..N-1), then width 2, ...
    (``_width_rows``).

    table (torch.Tensor): The block's range-max table (``inference_table``).
    n (int): The block's tokens.
    max_width (int): The widest span (<= the table's longest range).
    span_weight (torch.Tensor): (H, E) the span part's weights, transposed.
    RETURNS (torch.Tensor): (sum over w of N - w + 1, E).
    """
    parts = []
    for w in range(1, max_width + 1):
        k = w.bit_length() - 1
        first, rows = k * n, n - w + 1
        pooled = table[first : first + rows]
        if w != 1 << k:
            shift = first + w - (1 << k)
            pooled = torch.maximum(pooled, table[shift : shift + rows])
        parts.append(pooled @ span_weight)
    return torch.cat(parts)


def _width_rows(n_tokens: int, max_width: int, starts: numpy.ndarray, lengths: numpy.ndarray) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The row of each span in ``_span_part_by_width``
    (called with the same max_width)."""
    first = numpy.concatenate([[0], numpy.cumsum(n_tokens + 1 - numpy.arange(1, max_width))])
    return first[lengths - 1] + starts
