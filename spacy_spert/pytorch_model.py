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

Each classifier holds its training computation (``forward``: one linear map
of the concatenated, dropped-out input) beside its factorised inference
computation (``predict``: the same linear map split by input columns, so that
no (spans, 2H + W) or (pairs, 3H + ...) input is ever built; the parts are
projected once per token, per width or per kept span). A test checks that the
two agree.
"""
from typing import List, Optional, Tuple

import torch
from torch.nn.functional import linear

NEG_INF = float("-inf")


class RangeMax:
    """Max-pool of token ranges from a sparse table of range maxima.

    Token vectors are the max over each token's wordpieces. Level k of the
    table holds the max over 2**k consecutive tokens, so the max over
    [start, end) is max(table[k, start], table[k, end - 2**k]) with
    k = floor(log2(end - start)). A range that is empty or covers no wordpiece
    pools to zeros. Levels are built up to the longest range that can be asked
    for (``max_range``), so memory is O(N log L x H).

    hidden (torch.Tensor): (R, H) wordpiece vectors.
    align_rows, align_tokens (torch.Tensor): (A,) the alignment: row of
        ``hidden`` and token of each (token, wordpiece) entry.
    n_tokens (int): The number of tokens.
    max_range (int): The longest range that will be pooled.
    all_covered (bool): Every token has a wordpiece, so that only empty
        ranges need a check (none for ``nonempty`` calls).
    """

    def __init__(self, hidden, align_rows, align_tokens, n_tokens: int, max_range: int, all_covered: bool = False):
        width = hidden.shape[1]
        self.grad = torch.is_grad_enabled() and hidden.requires_grad
        index = align_tokens.unsqueeze(1).expand(-1, width)
        src = hidden.index_select(0, align_rows)
        # covered[i]: tokens with wordpieces before token i (None: all have)
        self.covered = None
        if not all_covered:
            has_wp = torch.zeros((n_tokens,), dtype=torch.long, device=hidden.device)
            has_wp[align_tokens] = 1
            self.covered = torch.cat([has_wp.new_zeros((1,)), has_wp.cumsum(0)])
        if self.grad:
            tokens = hidden.new_full((n_tokens, width), NEG_INF).scatter_reduce(0, index, src, reduce="amax")
            levels = [tokens]
            step = 1
            while step * 2 <= max_range:
                prev = levels[-1]
                shifted = torch.cat([prev[step:], prev.new_full((step, width), NEG_INF)])
                levels.append(torch.maximum(prev, shifted))
                step *= 2
            self.table = torch.cat(levels)
        else:
            # Inference: the levels are written into one (levels, N, H) slab
            # in place. Rows of level k that would reach past the end stay
            # -inf; they are never read (a range [start, end) reads rows
            # start and end - 2**k <= N - 2**k).
            n_levels = max(1, int(max_range).bit_length())  # 2**k <= max_range
            table = hidden.new_full((n_levels, n_tokens, width), NEG_INF)
            table[0].scatter_reduce_(0, index, src, reduce="amax")
            step = 1
            for k in range(1, n_levels):
                if step < n_tokens:
                    torch.maximum(table[k - 1, : n_tokens - step], table[k - 1, step:], out=table[k, : n_tokens - step])
                step *= 2
            self.table = table.view(-1, width)
        self.n_tokens = n_tokens
        self.log2 = _floor_log2(n_tokens + 1, hidden.device)

    def __call__(self, starts: torch.Tensor, ends: torch.Tensor, nonempty: bool = False) -> torch.Tensor:
        """RETURNS (torch.Tensor): (len(starts), H) the max over [start, end).

        nonempty (bool): The caller guarantees end > start for every range
            (spans), so that no check is needed when every token has wordpieces.
        """
        if self.covered is not None:
            covered = self.covered.index_select(0, ends) - self.covered.index_select(0, starts)
            valid = (ends > starts) & (covered > 0)
        else:
            valid = None if nonempty else ends > starts
        all_valid = valid is None or bool(valid.all())
        if not all_valid:
            starts = torch.where(valid, starts, torch.zeros_like(starts))
            ends = torch.where(valid, ends, torch.ones_like(ends))
        level = self.log2.index_select(0, ends - starts)
        base = level * self.n_tokens
        a = self.table.index_select(0, base + starts)
        b = self.table.index_select(0, base + ends - (1 << level))
        if self.grad:
            pooled = torch.maximum(a, b)
            return pooled if all_valid else pooled.masked_fill(~valid.unsqueeze(1), 0.0)
        pooled = torch.maximum(a, b, out=a)
        return pooled if all_valid else pooled.masked_fill_(~valid.unsqueeze(1), 0.0)


_LOG2_TABLES: dict = {}


def _floor_log2(n: int, device: torch.device) -> torch.Tensor:
    """(n,) floor(log2(length)) for lengths 0..n-1 (0 -> 0), from a table
    kept per device and grown by doubling, so that inference does not build
    it per batch. RETURNS (torch.Tensor): int64 view of the table."""
    table = _LOG2_TABLES.get(device)
    if table is None or table.shape[0] < n:
        size = max(n, 1024, 2 * (0 if table is None else table.shape[0]))
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in training too
            lengths = torch.arange(size, device=device).clamp(min=1)
            table = (torch.frexp(lengths.double())[1] - 1).long()
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
            return self.classes.weight, self.classes.bias
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
        token_cls: torch.Tensor,
        width_table: torch.Tensor,
        starts: torch.Tensor,
        ends: torch.Tensor,
        max_width: int,
        chunk: int,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Inference: the logits of ``forward`` (without dropout), computed
        by parts: the [CLS] part once per token, the width part once per
        width, the span part per span, in chunks of ``chunk`` spans.

        pool (RangeMax): The block's range-max pooling.
        token_cls (torch.Tensor): (N, H) the [CLS] vector of each token's window.
        width_table (torch.Tensor): (max_width + 1, W) the width embeddings.
        starts, ends (torch.Tensor): (S,) the spans, in the block's tokens.
        max_width (int): Wider spans take the last width embedding.
        chunk (int): Spans per chunk.
        RETURNS (Tuple[torch.Tensor, Optional[torch.Tensor]]): (S, n_outputs)
            logits, and the (S, H) span pools when all spans fit one chunk
            (else None: the caller pools the spans it needs again).
        """
        weight, bias = self.weight_and_bias()
        h = self.hidden_width
        cls_part = linear(token_cls, weight[:, :h])
        width_part = linear(width_table, weight[:, 2 * h :])
        logits = []
        for i in range(0, int(starts.shape[0]), chunk):
            s, e = starts[i : i + chunk], ends[i : i + chunk]
            pooled = pool(s, e, nonempty=True)
            logits.append(
                linear(pooled, weight[:, h : 2 * h], bias)
                + cls_part.index_select(0, s)
                + width_part.index_select(0, (e - s).clamp(max=max_width))
            )
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
        starts: torch.Tensor,
        ends: torch.Tensor,
        span_pool: torch.Tensor,
        widths: torch.Tensor,
        entity_logits: torch.Tensor,
        heads: torch.Tensor,
        tails: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        """Inference: the logits of ``forward`` (without dropout) with the
        same arguments, computed by parts: the head and tail parts once per
        span, and per pair only the context, in chunks of ``chunk`` pairs."""
        if heads.shape[0] == 0:
            return span_pool.new_zeros((0, self.n_outputs))
        weight, bias = self.weight_and_bias()
        w_ctx, w_head, w_tail, w_head_width, w_tail_width, *w_logits = torch.split(weight, self.sizes, dim=1)
        head_part = linear(span_pool, w_head) + linear(widths, w_head_width)
        tail_part = linear(span_pool, w_tail) + linear(widths, w_tail_width)
        if self.uses_entity_logits:
            head_part = head_part + linear(entity_logits, w_logits[0])
            tail_part = tail_part + linear(entity_logits, w_logits[1])
        pieces = []
        for i in range(0, int(heads.shape[0]), chunk):
            h, t = heads[i : i + chunk], tails[i : i + chunk]
            ctx_start = torch.minimum(ends.index_select(0, h), ends.index_select(0, t))
            ctx_end = torch.maximum(starts.index_select(0, h), starts.index_select(0, t))
            pieces.append(
                linear(pool(ctx_start, ctx_end), w_ctx, bias) + head_part.index_select(0, h) + tail_part.index_select(0, t)
            )
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


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
        align_rows: torch.Tensor,
        align_tokens: torch.Tensor,
        token_cls_rows: torch.Tensor,
        n_tokens: int,
        max_range: int,
        span_starts: torch.Tensor,
        span_ends: torch.Tensor,
        span_groups: torch.Tensor,
        blocks: List[Tuple[int, int, int, int]],
        objective,
        threshold: float,
        given_entities: bool = False,
        all_covered: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference: classify all candidate spans, then the pairs of the kept
        spans of each pairing group, one block of whole groups at a time (the
        range-max table and span features of a long doc never exist at once).

        hidden, align_*, token_cls_rows, n_tokens, max_range, span_*: as in
            ``forward``; span_groups: (S,) the pairing group of each span.
        blocks: (first span, end span, first token, end token) per block
            (``Candidates.blocks``).
        objective, threshold: The decoding rule (``losses.py``): the spans it
            keeps as entities, the best-scoring of each group, are paired.
        given_entities (bool): Every candidate is a given entity: all are
            paired, with no bound on their number.
        all_covered (bool): Every token has a wordpiece (no range needs the
            check for tokens without one).
        RETURNS: entity logits (S, E), pair heads and tails (P,) (indices into
            the spans) and relation logits (P, R).
        """
        if span_starts.shape[0] == 0:
            ent, rel = self._no_logits(hidden)
            empty = span_starts.new_zeros((0,))
            return ent, empty, empty, rel
        outputs = []
        if len(blocks) == 1 and blocks[0][2] == 0 and blocks[0][3] == n_tokens:
            bounds = [0, int(align_tokens.shape[0])]  # one block of all tokens (a batch of sentences)
        else:
            bounds = torch.searchsorted(
                align_tokens, torch.tensor([t for b in blocks for t in b[2:]], device=align_tokens.device)
            ).tolist()
        for i, (s0, s1, t0, t1) in enumerate(blocks):
            a0, a1 = bounds[2 * i], bounds[2 * i + 1]
            pool = RangeMax(hidden, align_rows[a0:a1], align_tokens[a0:a1] - t0, t1 - t0, min(max_range, t1 - t0),
                            all_covered=all_covered)
            ent, heads, tails, rel = self._predict_block(
                pool,
                hidden.index_select(0, token_cls_rows[t0:t1]),
                span_starts[s0:s1] - t0,
                span_ends[s0:s1] - t0,
                span_groups[s0:s1],
                objective,
                threshold,
                given_entities,
            )
            outputs.append((ent, heads + s0, tails + s0, rel))
        return tuple(torch.cat(parts) for parts in zip(*outputs))

    def _predict_block(self, pool, token_cls, starts, ends, groups, objective, threshold: float, given_entities: bool):
        """Entity logits of the spans of one block, and relation logits of the
        pairs of its kept spans (head and tail indices into the block's
        spans). Pairs are formed among at most max(10, ceil(ratio x group
        tokens)) kept spans per group, the highest-scoring ones."""
        chunk = self.pair_batch_size
        entity_logits, span_pool = self.entity_classifier.predict(
            pool, token_cls, self.width_embedding.weight, starts, ends, self.max_width, chunk
        )
        if given_entities:
            kept = torch.arange(int(starts.shape[0]), device=starts.device)
        else:
            kept = objective.keep_entities(entity_logits, threshold).nonzero().squeeze(1)
        if kept.numel() > 10 and not given_entities:
            _, scores = objective.decode_entities(entity_logits.index_select(0, kept), threshold)
            limits = group_token_counts(starts, ends, groups)
            limits = torch.ceil(limits * self.max_pair_entities_per_token).long().clamp(min=10)
            kept = top_per_group(kept, scores, groups, limits)
        local = torch.arange(kept.numel(), device=kept.device)
        heads, tails = pairs_within_groups(local, groups.index_select(0, kept))
        k_starts, k_ends = starts.index_select(0, kept), ends.index_select(0, kept)
        k_pool = pool(k_starts, k_ends, nonempty=True) if span_pool is None else span_pool.index_select(0, kept)
        k_width = self.width_embedding((k_ends - k_starts).clamp(max=self.max_width))
        relation_logits = self.relation_classifier.predict(
            pool, k_starts, k_ends, k_pool, k_width, entity_logits.index_select(0, kept), heads, tails, chunk
        )
        return entity_logits, kept.index_select(0, heads), kept.index_select(0, tails), relation_logits

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


# Up to this many kept spans, pairs_within_groups uses a dense (K, K) mask.
DENSE_PAIRS_MAX = 256


def pairs_within_groups(kept: torch.Tensor, groups: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (a, b), a != b, of kept spans in the same group,
    ordered by the head's group, then by position in ``kept``.

    kept (torch.Tensor): (K,) indices of the kept spans.
    groups (torch.Tensor): (S,) pairing group of every span.
    RETURNS (Tuple[torch.Tensor, torch.Tensor]): head and tail span indices.
    """
    if kept.numel() < 2:
        empty = kept.new_zeros((0,))
        return empty, empty
    grp = groups.index_select(0, kept)
    if kept.numel() <= DENSE_PAIRS_MAX:
        # Few spans (a sentence, a small batch): the (K, K) same-group mask.
        # Its pairs come in the order of the general path below, as the kept
        # spans are ordered by group (candidates are; top_per_group keeps it).
        same = grp.unsqueeze(1) == grp.unsqueeze(0)
        same.fill_diagonal_(False)
        head_pos, tail_pos = same.nonzero(as_tuple=True)
        return kept.index_select(0, head_pos), kept.index_select(0, tail_pos)
    grp, order = torch.sort(grp, stable=True)
    kept = kept.index_select(0, order)
    _, counts = torch.unique_consecutive(grp, return_counts=True)
    group_start = torch.cumsum(counts, 0) - counts
    group = torch.repeat_interleave(torch.arange(len(counts), device=kept.device), counts)
    per_head = counts.index_select(0, group)  # partners (incl. itself) per kept span
    head_pos = torch.repeat_interleave(torch.arange(len(kept), device=kept.device), per_head)
    first = torch.cumsum(per_head, 0) - per_head
    local = torch.arange(head_pos.numel(), device=kept.device) - torch.repeat_interleave(first, per_head)
    tail_pos = group_start.index_select(0, group.index_select(0, head_pos)) + local
    mask = head_pos != tail_pos
    return kept.index_select(0, head_pos[mask]), kept.index_select(0, tail_pos[mask])


def group_token_counts(starts: torch.Tensor, ends: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The number of tokens each group's spans cover (max end - min start),
    indexed by group id."""
    n = int(groups.max()) + 1
    first = torch.full((n,), int(ends.max()), dtype=starts.dtype, device=starts.device)
    last = torch.zeros((n,), dtype=ends.dtype, device=ends.device)
    first = first.scatter_reduce(0, groups, starts, reduce="amin")
    last = last.scatter_reduce(0, groups, ends, reduce="amax")
    return (last - first).clamp(min=0).double()


def top_per_group(kept: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """The kept spans with the highest scores, at most ``limits[group]`` per group.

    kept (torch.Tensor): (K,) span indices; scores (torch.Tensor): (K,) their scores.
    groups (torch.Tensor): (S,) group id per span; limits: (n_groups,).
    RETURNS (torch.Tensor): the selected span indices (ordered by group).
    """
    by_score = torch.argsort(-scores, stable=True)
    grp = groups.index_select(0, kept.index_select(0, by_score))
    by_group = torch.argsort(grp, stable=True)
    order = by_score.index_select(0, by_group)
    grp = grp.index_select(0, by_group)
    _, counts = torch.unique_consecutive(grp, return_counts=True)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.arange(grp.numel(), device=grp.device) - first
    return kept.index_select(0, order)[rank < limits.index_select(0, grp)]
