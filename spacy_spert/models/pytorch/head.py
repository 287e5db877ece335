"""The PyTorch side of the SpERT model: pooling and the two classifiers.

* ``RangeMax``: max-pooling of any token range from per-token maxima over
  wordpieces and a sparse table of range maxima (no spans x wordpieces x
  hidden tensor, no Python loop over spans or pairs).
* ``EntityClassifier``: [CLS ; span max-pool ; width embedding] -> entity logits.
* ``RelationClassifier``: [context ; head ; tail ; head width ; tail width
  (; head and tail entity logits)] -> relation logits.
* ``SpERTHead``: the module that owns the width embedding and both
  classifiers. ``forward`` is the training computation on sampled spans and
  pairs; ``predict`` the inference computation on all candidates, block by
  block, pairing the kept spans of each pairing group.

At inference the indices (which spans, which pairs, which table rows) are
small numpy arrays worked out on the host; the device only gathers, takes
maxima and multiplies, so that a sentence costs a few dozen tensor operations.

Each classifier holds its training computation (``forward``: one linear map
of the concatenated, dropped-out input) beside its factorised inference
computation (``predict``: the same linear map split by input columns, so that
no (spans, 2H + W) or (pairs, 3H + ...) input is ever built; the parts are
projected once per token, per width or per kept span). The relation stage
also has ``predict_pairs`` for a block's few pairs: their concatenated input
is built, as it takes fewer tensor operations than the parts. A test checks
that these agree with the training computation.
"""
from functools import lru_cache
from typing import List, NamedTuple, Optional, Tuple

import numpy
import torch
from torch.nn.functional import linear

NEG_INF = float("-inf")


class RangeMax:
    """Max-pool of token ranges from a sparse table of range maxima.

    Token vectors are the max over each token's wordpieces. Level k of the
    table holds the max over 2**k consecutive tokens, so the max over
    [start, end) is max(table[k, start], table[k, end - 2**k]) with
    k = floor(log2(end - start)). A range that is empty or covers no wordpiece
    pools to zeros: it reads the table's last row, which is zero. Levels are
    built up to the longest range that can be asked for (``max_range``), so
    memory is O(N log L x H).

    The ranges and the alignment come as torch tensors (training: the table
    rows are computed on the device) or as numpy arrays (inference: the rows
    are computed on the host, and only the gathers run on the device).

    hidden (torch.Tensor): (R, H) wordpiece vectors.
    align_rows, align_tokens: (A,) the alignment: row of ``hidden`` and
        token of each (token, wordpiece) entry (torch tensors or numpy arrays).
    n_tokens (int): The number of tokens.
    max_range (int): The longest range that will be pooled (<= n_tokens).
    all_covered (bool): Every token has a wordpiece, so that only empty
        ranges need a check (none for ``nonempty`` calls).
    """

    def __init__(self, hidden, align_rows, align_tokens, n_tokens: int, max_range: int, all_covered: bool = False):
        width = hidden.shape[1]
        self.device = hidden.device
        self.grad = torch.is_grad_enabled() and hidden.requires_grad
        host = isinstance(align_tokens, numpy.ndarray)
        # covered[i]: tokens with wordpieces before token i (None: all have)
        self.covered = None
        if not all_covered:
            if host:
                has_wp = numpy.bincount(align_tokens, minlength=n_tokens) > 0
                self.covered = numpy.concatenate([[0], numpy.cumsum(has_wp)])
            else:
                has_wp = align_tokens.new_zeros((n_tokens,))
                has_wp[align_tokens] = 1
                self.covered = torch.cat([has_wp.new_zeros((1,)), has_wp.cumsum(0)])
        index = _index(align_tokens, self.device).unsqueeze(1).expand(-1, width)
        src = _take_rows(hidden, align_rows)
        n_levels = max(1, int(max_range).bit_length())  # 2**k <= max_range
        if self.grad:
            tokens = hidden.new_full((n_tokens, width), NEG_INF).scatter_reduce(0, index, src, reduce="amax")
            levels = [tokens]
            for k in range(1, n_levels):
                step = 1 << (k - 1)
                prev = levels[-1]
                levels.append(torch.maximum(prev, torch.cat([prev[step:], prev.new_full((step, width), NEG_INF)])))
            self.table = torch.cat(levels + [hidden.new_zeros((1, width))])
        else:
            # Inference: the levels are written into one slab in place, and
            # only the rows of level k that a range can read (start <=
            # N - 2**k); the others are never written nor read.
            table = hidden.new_empty((n_levels * n_tokens + 1, width))
            if all_covered:
                table[:n_tokens].scatter_reduce_(0, index, src, reduce="amax", include_self=False)
            else:
                table[:n_tokens].fill_(NEG_INF).scatter_reduce_(0, index, src, reduce="amax")
            # A short block's levels on the CPU are written through numpy,
            # whose slices of the same memory cost a fraction of torch's (a
            # sentence's levels take less time to compute than torch takes to
            # slice them); longer ones by torch, which uses all threads.
            small = table.device.type == "cpu" and n_tokens * width <= NUMPY_LEVELS_MAX_VALUES
            slab, maximum = (table.numpy(), numpy.maximum) if small else (table, torch.maximum)
            slab[-1] = 0.0
            for k in range(1, n_levels):
                step, rows = 1 << (k - 1), n_tokens - (1 << k) + 1
                prev = (k - 1) * n_tokens
                maximum(
                    slab[prev : prev + rows],
                    slab[prev + step : prev + step + rows],
                    out=slab[k * n_tokens : k * n_tokens + rows],
                )
            self.table = table
        self.zero_row = self.table.shape[0] - 1
        self.n_tokens = n_tokens
        self.log2 = _floor_log2(n_tokens + 1, None if host else self.device)

    def rows(self, starts, ends, nonempty: bool = False):
        """The two table rows whose maximum is the pool of each range
        [start, end): the zero row (twice) for an empty range or one that
        covers no wordpiece. Works on numpy arrays and on torch tensors alike.

        starts, ends: (S,) the ranges, in the pool's tokens.
        nonempty (bool): The caller guarantees end > start for every range.
        RETURNS (Tuple): (S,) rows a and b, the same kind of array as starts.
        """
        lengths = ends - starts
        valid = None if nonempty else lengths > 0
        if self.covered is not None:
            has_wp = self._has_wordpieces(starts, ends)
            valid = has_wp if valid is None else valid & has_wp
        if valid is not None:
            invalid = ~valid
            lengths[invalid] = 0  # any level will do: the rows are replaced
        level = self.log2[lengths]
        base = level * self.n_tokens
        a = base + starts
        b = base + ends - (1 << level)
        if valid is not None:
            a[invalid] = self.zero_row
            b[invalid] = self.zero_row
        return a, b

    def _has_wordpieces(self, starts, ends):
        """RETURNS: bool (S,), the ranges that hold a token with wordpieces
        (only when some token has none: ``covered`` is set)."""
        return (self.covered[ends] - self.covered[starts]) > 0

    def all_covering(self, starts: numpy.ndarray, ends: numpy.ndarray) -> bool:
        """RETURNS (bool): Every range (numpy, non-empty) holds a token with
        wordpieces, so that none pools to zeros."""
        return self.covered is None or bool(self._has_wordpieces(starts, ends).all())

    def __call__(self, starts, ends, nonempty: bool = False) -> torch.Tensor:
        """RETURNS (torch.Tensor): (len(starts), H) the max over [start, end).

        starts, ends: (S,) the ranges, numpy arrays or torch tensors.
        nonempty (bool): The caller guarantees end > start for every range
            (spans), so that no check is needed when every token has wordpieces.
        """
        a, b = self.rows(starts, ends, nonempty)
        if self.grad:
            return torch.maximum(_take(self.table, a), _take(self.table, b))
        n = len(a)  # inference: both rows of every range in one gather
        both = _take(self.table, numpy.concatenate([a, b]) if isinstance(a, numpy.ndarray) else torch.cat([a, b]))
        return torch.maximum(both[:n], both[n:], out=both[:n])


# A table level of at most this many values (tokens x hidden width) is
# computed with numpy on the CPU: torch's operations on tensors this small run
# on one thread (its grain size) and cost more in dispatch than in work.
NUMPY_LEVELS_MAX_VALUES = 32768

_LOG2_TABLES: dict = {}


def _floor_log2(n: int, device: Optional[torch.device]):
    """(n,) floor(log2(length)) for lengths 0..n-1 (0 -> 0), from a table
    kept per device (None: a numpy array on the host) and grown by doubling,
    so that inference does not build it per batch.
    RETURNS (Union[torch.Tensor, numpy.ndarray]): int64 view of the table."""
    table = _LOG2_TABLES.get(device)
    if table is None or table.shape[0] < n:
        size = max(n, 1024, 2 * (0 if table is None else table.shape[0]))
        lengths = numpy.maximum(numpy.arange(size), 1)
        table = (numpy.frexp(lengths.astype("float64"))[1] - 1).astype("int64")
        if device is not None:
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in training too
                table = torch.from_numpy(table).to(device)
        _LOG2_TABLES[device] = table
    return table[:n]


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

    def predict(
        self,
        pool: RangeMax,
        cls_vectors: torch.Tensor,
        token_windows: numpy.ndarray,
        width_table: torch.Tensor,
        starts: numpy.ndarray,
        ends: numpy.ndarray,
        widths: numpy.ndarray,
        chunk: int,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Inference: the logits of ``forward`` (without dropout), computed
        by parts: the [CLS] part once per window and the width part (with the
        bias) once per width, looked up per span from one small table; the
        span part per span, in chunks of ``chunk`` spans, or, for a long block
        of narrow spans, width by width (``_span_part_by_width``).

        pool (RangeMax): The block's range-max pooling.
        cls_vectors (torch.Tensor): (n_windows, H) the [CLS] vectors of the
            block's transformer windows.
        token_windows (numpy.ndarray): (N,) the window of each token.
        width_table (torch.Tensor): (n_widths, W) the width embeddings.
        starts, ends (numpy.ndarray): (S,) the spans, in the block's tokens.
        widths (numpy.ndarray): (S,) the width embedding row of each span.
        chunk (int): Spans per chunk.
        RETURNS (Tuple[torch.Tensor, Optional[torch.Tensor]]): (S, n_outputs)
            logits, and the (S, H) span pools when all spans fit one chunk
            (else None: the caller pools the spans it needs again).
        """
        weight, bias = self.weight_and_bias()
        h = self.hidden_width
        # fixed: the [CLS] and width parts (with the bias) of the logits, at
        # row fixed_rows of a span: its width, or window * n_widths + width
        if len(cls_vectors) == 1:  # one window
            fixed = torch.addmm(linear(cls_vectors, weight[:, :h], bias), width_table, weight[:, 2 * h :].t())
            fixed_rows = widths
        else:
            cls_part = linear(cls_vectors, weight[:, :h])
            width_part = linear(width_table, weight[:, 2 * h :], bias)
            fixed = (cls_part.unsqueeze(1) + width_part.unsqueeze(0)).reshape(-1, weight.shape[0])
            fixed_rows = token_windows[starts] * width_table.shape[0] + widths
        span_weight = weight[:, h : 2 * h].t()
        if pool.n_tokens >= WIDTH_SLICES_MIN_TOKENS:
            lengths = ends - starts
            longest = int(lengths.max())
            if longest <= WIDTH_SLICES_MAX_WIDTH and pool.all_covering(starts, ends):
                span_part = _span_part_by_width(pool, longest, span_weight)
                span_rows = _width_rows(pool.n_tokens, longest, starts, lengths)
                return _take(span_part, span_rows) + _take(fixed, fixed_rows), None
        logits, pooled = [], None
        for i in range(0, len(starts), chunk):
            pooled = pool(starts[i : i + chunk], ends[i : i + chunk], nonempty=True)
            logits.append(torch.addmm(_take(fixed, fixed_rows[i : i + chunk]), pooled, span_weight))
        if len(logits) == 1:
            return logits[0], pooled
        return torch.cat(logits), None


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

    def predict(
        self,
        pool: RangeMax,
        starts: numpy.ndarray,
        ends: numpy.ndarray,
        span_pool: torch.Tensor,
        width_table: torch.Tensor,
        widths: numpy.ndarray,
        entity_logits: Optional[torch.Tensor],
        heads: numpy.ndarray,
        tails: numpy.ndarray,
        chunk: int,
    ) -> torch.Tensor:
        """Inference: the logits of ``forward`` (without dropout), computed
        by parts: the head and tail parts once per span (their width parts
        and the bias looked up per width), and per pair only the context, in
        chunks of ``chunk`` pairs.

        pool (RangeMax): The block's range-max pooling.
        starts, ends (numpy.ndarray): (K,) the spans, in the block's tokens.
        span_pool (torch.Tensor): (K, H) their max-pools.
        width_table (torch.Tensor): (n_widths, W) the width embeddings.
        widths (numpy.ndarray): (K,) the width embedding row of each span.
        entity_logits (Optional[torch.Tensor]): (K, E) their entity logits
            (used when the stage takes them).
        heads, tails (numpy.ndarray): (P,) the pairs, positions in the spans.
        chunk (int): Pairs per chunk.
        RETURNS (torch.Tensor): (P, n_outputs) logits.
        """
        if len(heads) == 0:
            return span_pool.new_zeros((0, self.n_outputs))
        weight, bias = self.weight_and_bias()
        w_ctx, w_head, w_tail, w_head_width, w_tail_width, *w_logits = torch.split(weight, self.sizes, dim=1)
        head_part = torch.addmm(_take(linear(width_table, w_head_width, bias), widths), span_pool, w_head.t())
        tail_part = torch.addmm(_take(linear(width_table, w_tail_width), widths), span_pool, w_tail.t())
        if self.uses_entity_logits:
            head_part = torch.addmm(head_part, entity_logits, w_logits[0].t())
            tail_part = torch.addmm(tail_part, entity_logits, w_logits[1].t())
        pieces = []
        for i in range(0, len(heads), chunk):
            h, t = heads[i : i + chunk], tails[i : i + chunk]
            pair_part = _take(head_part, h) + _take(tail_part, t)
            context = pool(numpy.minimum(ends[h], ends[t]), numpy.maximum(starts[h], starts[t]))
            pieces.append(torch.addmm(pair_part, context, w_ctx.t()))
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]

    def predict_pairs(
        self,
        pool: RangeMax,
        starts: numpy.ndarray,
        ends: numpy.ndarray,
        span_pool: Optional[torch.Tensor],
        width_table: torch.Tensor,
        widths: numpy.ndarray,
        entity_logits: torch.Tensor,
        heads: numpy.ndarray,
        tails: numpy.ndarray,
    ) -> torch.Tensor:
        """Inference for a few pairs (a sentence's): the logits of ``forward``
        (without dropout) from each pair's concatenated input, with the head
        and tail pools read from the spans' pools. Half the tensor operations
        of ``predict``, which computes parts once per kept span and pays off
        for many pairs.

        pool (RangeMax): The block's range-max pooling.
        starts, ends (numpy.ndarray): (S,) the spans, in the block's tokens.
        span_pool (Optional[torch.Tensor]): (S, H) their max-pools, or None
            (the head and tail pools are then read from the table).
        width_table (torch.Tensor): (n_widths, W) the width embeddings.
        widths (numpy.ndarray): (S,) the width embedding row of each span.
        entity_logits (torch.Tensor): (S, E) the spans' entity logits (used
            when the stage takes them).
        heads, tails (numpy.ndarray): (P,) the pairs, indices into the spans.
        RETURNS (torch.Tensor): (P, n_outputs) logits.
        """
        n_pairs = len(heads)
        both = numpy.empty((n_pairs, 2), dtype="int64")  # head, tail of each pair
        both[:, 0] = heads
        both[:, 1] = tails
        both = both.ravel()
        # the context: the tokens between the two spans
        context = pool(numpy.minimum(ends[heads], ends[tails]), numpy.maximum(starts[heads], starts[tails]))
        if span_pool is None:
            span_pool = pool(starts[both], ends[both], nonempty=True)
        else:
            span_pool = _take(span_pool, both)
        parts = [context, span_pool.view(n_pairs, -1), _take(width_table, widths[both]).view(n_pairs, -1)]
        if self.uses_entity_logits:
            parts.append(_take(entity_logits, both).view(n_pairs, -1))
        weight, bias = self.weight_and_bias()
        return linear(torch.cat(parts, dim=1), weight, bias)


class SpERTHead(torch.nn.Module):
    """Span pooling, entity and relation classifiers (PyTorch).

    hidden_width (int): The transformer's hidden width H.
    n_entity_outputs (int): Columns of the entity logits.
    n_relation_outputs (int): Columns of the relation logits.
    width_embedding_size, max_width_embeddings, dropout, pair_batch_size,
        max_pair_entities_per_token: see ``build_spert_model``.
    entity_logits_in_relation (bool): Append both spans' entity logits (all
        n_entity_outputs columns) to the relation input (SpERT.MT).
    identification_heads (bool): SpERT.MT's identification head per stage
        (see ``EntityClassifier``). All layers are initialized N(0, 0.02) with
        zero biases, as BERT's own layers.
    """

    def __init__(
        self,
        hidden_width: int,
        n_entity_outputs: int,
        n_relation_outputs: int,
        *,
        width_embedding_size: int,
        max_width_embeddings: int,
        dropout: float,
        pair_batch_size: int,
        max_pair_entities_per_token: float,
        entity_logits_in_relation: bool,
        identification_heads: bool,
    ):
        super().__init__()
        self.max_width = max_width_embeddings
        self.pair_batch_size = pair_batch_size
        self.max_pair_entities_per_token = max_pair_entities_per_token
        self.width_embedding = torch.nn.Embedding(max_width_embeddings + 1, width_embedding_size)
        self.entity_classifier = EntityClassifier(
            hidden_width, width_embedding_size, n_entity_outputs, identification_heads, dropout
        )
        self.relation_classifier = RelationClassifier(
            hidden_width,
            width_embedding_size,
            n_relation_outputs,
            n_entity_outputs if entity_logits_in_relation else 0,
            identification_heads,
            dropout,
        )
        # BERT's initialization, which SpERT and SpERT.MT (BertPreTrainedModel
        # subclasses) apply to their own layers: N(0, 0.02), zero biases.
        for module in self.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        self._register_load_state_dict_pre_hook(_rename_legacy_keys)

    def forward(
        self,
        hidden: torch.Tensor,
        *,
        align_rows: torch.Tensor,
        align_tokens: torch.Tensor,
        token_cls_rows: torch.Tensor,
        n_tokens: int,
        max_range: int,
        span_starts: torch.Tensor,
        span_ends: torch.Tensor,
        pair_heads: torch.Tensor,
        pair_tails: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Training: classify the sampled spans and pairs.

        hidden: (R, H) wordpiece vectors; align_rows/align_tokens: (A,) the
        token-to-wordpiece alignment; token_cls_rows: (N,) the [CLS] row per
        token; span_*: (S,) sampled spans in global token offsets; pair_*:
        (P,) sampled pairs, indices into the spans.
        RETURNS (Tuple[torch.Tensor, torch.Tensor]): entity logits (S, E) and
            relation logits (P, R).
        """
        if span_starts.shape[0] == 0:
            return self._no_logits(hidden)
        pool = RangeMax(hidden, align_rows, align_tokens, n_tokens, max_range)
        span_pool = pool(span_starts, span_ends)
        widths = self.width_embedding((span_ends - span_starts).clamp(max=self.max_width))
        cls = hidden.index_select(0, token_cls_rows.index_select(0, span_starts))
        entity_logits = self.entity_classifier(cls, span_pool, widths)
        relation_logits = self.relation_classifier(
            pool, span_starts, span_ends, span_pool, widths, entity_logits, pair_heads, pair_tails
        )
        return entity_logits, relation_logits

    def predict(
        self,
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
        given_entities: bool = False,
        all_covered: bool = False,
    ) -> "HeadPredictions":
        """Inference: classify all candidate spans, then the pairs of the kept
        spans of each pairing group, one block of whole groups at a time (the
        range-max table and span features of a long doc never exist at once).

        hidden: (R, H) wordpiece vectors (on the head's device); the rest are
            numpy arrays on the host: align_rows/align_tokens: (A,) the
            token-to-wordpiece alignment (ordered by token); cls_rows:
            (n_windows,) the [CLS] row of each transformer window;
            token_windows: (N,) the window of each token;
            span_starts/span_ends/span_groups: (S,) the candidates in global
            token offsets and their pairing group.
        n_tokens, max_range: as in ``forward``.
        blocks: (first span, end span, first token, end token) per block
            (``Candidates.blocks``).
        objective, threshold: The decoding rule (``losses.py``): the spans it
            keeps as entities, the best-scoring of each group, are paired.
        given_entities (bool): Every candidate is a given entity: all are
            paired, with no bound on their number.
        all_covered (bool): Every token has a wordpiece (no range needs the
            check for tokens without one).
        RETURNS (HeadPredictions): Logits and decoded entities of all spans,
            the pairs classified and their logits.
        """
        if len(span_starts) == 0:
            ent, rel = self._no_logits(hidden)
            empty = numpy.zeros((0,), dtype="int64")
            return HeadPredictions(ent, empty, numpy.zeros((0,), dtype="float32"), empty, empty, rel)
        if len(blocks) == 1 and blocks[0][2] == 0 and blocks[0][3] == n_tokens:
            bounds = [0, len(align_tokens)]  # one block of all tokens (a batch of sentences)
        else:
            bounds = numpy.searchsorted(align_tokens, [t for b in blocks for t in b[2:]]).tolist()
        if len(cls_rows) == 1:  # one window (a sentence): a view, no gather
            cls_vectors = hidden[int(cls_rows[0]) : int(cls_rows[0]) + 1]
        else:
            cls_vectors = _take(hidden, cls_rows)
        outputs = []
        for i, (s0, s1, t0, t1) in enumerate(blocks):
            a0, a1 = bounds[2 * i], bounds[2 * i + 1]
            pool = RangeMax(hidden, align_rows[a0:a1], _shift(align_tokens[a0:a1], -t0), t1 - t0,
                            min(max_range, t1 - t0), all_covered=all_covered)
            out = self._predict_block(
                pool,
                cls_vectors,
                token_windows[t0:t1],
                _shift(span_starts[s0:s1], -t0),
                _shift(span_ends[s0:s1], -t0),
                span_groups[s0:s1],
                objective,
                threshold,
                given_entities,
            )
            if s0:
                out = out._replace(pair_heads=out.pair_heads + s0, pair_tails=out.pair_tails + s0)
            outputs.append(out)
        if len(outputs) == 1:
            return outputs[0]
        return HeadPredictions(
            *(
                torch.cat(parts) if isinstance(parts[0], torch.Tensor) else numpy.concatenate(parts)
                for parts in zip(*outputs)
            )
        )

    def _predict_block(
        self, pool, cls_vectors, token_windows, starts, ends, groups, objective, threshold: float, given_entities: bool
    ) -> "HeadPredictions":
        """Entity logits of the spans of one block, and relation logits of the
        pairs of its kept spans (head and tail indices into the block's
        spans). Pairs are formed among at most max(10, ceil(ratio x group
        tokens)) kept spans per group, the highest-scoring ones."""
        chunk = min(self.pair_batch_size, SPAN_CHUNK)
        widths = numpy.minimum(ends - starts, self.max_width)
        width_table = self.width_embedding.weight
        entity_logits, span_pool = self.entity_classifier.predict(
            pool, cls_vectors, token_windows, width_table, starts, ends, widths, chunk
        )
        labels, scores = objective.decode_entities(_host(entity_logits), threshold)
        if given_entities:
            kept = numpy.arange(len(starts))
        else:
            kept = (labels > 0).nonzero()[0]
            if len(kept) > 10:
                limits = numpy.ceil(group_token_counts(starts, ends, groups) * self.max_pair_entities_per_token)
                kept = top_per_group(kept, scores[kept], groups, numpy.maximum(limits, 10).astype("int64"))
        heads, tails = pairs_within_groups(numpy.arange(len(kept)), groups[kept])  # positions in kept
        pair_heads, pair_tails = kept[heads], kept[tails]
        relations = self.relation_classifier
        if len(heads) == 0:
            relation_logits = entity_logits.new_zeros((0, relations.n_outputs))
        elif len(heads) <= FEW_PAIRS:
            relation_logits = relations.predict_pairs(
                pool, starts, ends, span_pool, width_table, widths, entity_logits, pair_heads, pair_tails
            )
        else:
            k_starts, k_ends = starts[kept], ends[kept]
            k_pool = pool(k_starts, k_ends, nonempty=True) if span_pool is None else _take(span_pool, kept)
            relation_logits = relations.predict(
                pool,
                k_starts,
                k_ends,
                k_pool,
                width_table,
                widths[kept],
                _take(entity_logits, kept) if relations.uses_entity_logits else None,
                heads,
                tails,
                chunk,
            )
        return HeadPredictions(entity_logits, labels, scores, pair_heads, pair_tails, relation_logits)

    def _no_logits(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return (
            hidden.new_zeros((0, self.entity_classifier.n_outputs)),
            hidden.new_zeros((0, self.relation_classifier.n_outputs)),
        )


# Parameter names before the classifiers became modules of their own, so that
# pipelines saved by spacy-spert 0.1.0 still load.
_LEGACY_KEYS = {
    "entity_classifier.weight": "entity_classifier.classes.weight",
    "entity_classifier.bias": "entity_classifier.classes.bias",
    "entity_identifier.weight": "entity_classifier.identifier.weight",
    "entity_identifier.bias": "entity_classifier.identifier.bias",
    "relation_classifier.weight": "relation_classifier.classes.weight",
    "relation_classifier.bias": "relation_classifier.classes.bias",
    "relation_identifier.weight": "relation_classifier.identifier.weight",
    "relation_identifier.bias": "relation_classifier.identifier.bias",
}


def _rename_legacy_keys(state_dict, prefix, *args) -> None:
    for old, new in _LEGACY_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


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


def _index(rows, device: torch.device) -> torch.Tensor:
    """RETURNS (torch.Tensor): Indices (a numpy array or a tensor) as a
    tensor on the device (on the CPU sharing the numpy array's memory)."""
    if isinstance(rows, numpy.ndarray):
        rows = torch.from_numpy(rows)
    return rows if rows.device == device else rows.to(device)


def _take(x: torch.Tensor, rows) -> torch.Tensor:
    """RETURNS (torch.Tensor): The rows of x at the indices (numpy or torch)."""
    return x.index_select(0, _index(rows, x.device))


def _take_rows(x: torch.Tensor, rows) -> torch.Tensor:
    """RETURNS (torch.Tensor): The rows of x at the indices, as a view when
    they are one increasing run of numpy indices (a doc's wordpieces in one
    window), else gathered."""
    if isinstance(rows, numpy.ndarray) and len(rows) > 1:
        first, last = int(rows[0]), int(rows[-1])
        if last - first == len(rows) - 1 and not numpy.count_nonzero(rows[1:] - rows[:-1] - 1):
            return x[first : last + 1]
    return _take(x, rows)


def _shift(offsets: numpy.ndarray, by: int) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The offsets moved by ``by`` (no copy for 0)."""
    return offsets + by if by else offsets


def _host(x: torch.Tensor) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): The tensor's values on the host."""
    return x.cpu().numpy()


# A block of at least this many tokens whose spans are at most this wide
# takes the span part of its entity logits width by width (see
# _span_part_by_width); a shorter one gathers the two table rows of each span.
WIDTH_SLICES_MIN_TOKENS = 192
WIDTH_SLICES_MAX_WIDTH = 16


def _span_part_by_width(pool: RangeMax, max_width: int, span_weight: torch.Tensor) -> torch.Tensor:
    """The span part of the entity logits (the span max-pool times its
    weights) of every span of 1..max_width tokens of the pool's tokens,
    width after width: the spans of width w starting at 0, 1, ... pool to the
    maximum of two contiguous slices of one table level (a whole level for
    w = 2**k), so no span vector is gathered and only one width's vectors
    exist at a time. Rows: width 1 (starts 0..N-1), then width 2, ...
    (``_width_rows``).

    pool (RangeMax): The block's pooling (inference table).
    max_width (int): The widest span (<= the pool's max_range).
    span_weight (torch.Tensor): (H, E) the span part's weights, transposed.
    RETURNS (torch.Tensor): (sum over w of N - w + 1, E).
    """
    n, table = pool.n_tokens, pool.table
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


# At inference spans and pairs are pooled and classified in chunks of at most
# this many (and at most the head's pair_batch_size): a chunk's pooled vectors
# (1024 x H floats) stay in the CPU's cache between the gather and the matmul.
SPAN_CHUNK = 1024
# Up to this many pairs in a block (a sentence's few), relation logits are
# computed per pair from its concatenated input (predict_pairs); more, by
# parts computed once per kept span (RelationClassifier.predict).
FEW_PAIRS = 24
# Up to this many kept spans, pairs_within_groups uses a dense (K, K) mask.
DENSE_PAIRS_MAX = 256


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
    if len(kept) <= DENSE_PAIRS_MAX:
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
