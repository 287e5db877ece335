"""The SpERT model: span and relation classifiers over transformer wordpieces.

``build_spert_model`` (registered as ``spacy-spert.SpERT.v1``; SpERT.MT is
``build_spert_mt_model``, ``spacy-spert.SpERTMT.v1``) chains a
transformer listener (which yields one ``TransformerData`` per doc: wordpiece
vectors, the token-to-wordpiece alignment and [CLS]) with a PyTorch head:

1. Per-token maxima over each token's wordpieces (one ``scatter_reduce``).
2. A sparse table of range maxima over the tokens (log2(L) levels), from which
   the max-pool of any token range is the max of two rows: spans (width
   1..10) and the localized context between two spans are pooled without ever
   building a spans x wordpieces x hidden tensor, and without a Python loop
   over spans or pairs.
3. Entity classifier on [cls ; span max-pool ; width embedding].
4. At inference, all ordered pairs of kept spans within a segment, built with
   tensor ops and classified in chunks; in training, the sampled pairs.
   Relation classifier on [context ; span_a ; span_b ; width_a ; width_b].

The model's input is ``(docs, SpanBatch)``; its output is a ``SpERTOutput``.
The listener rule of spacy-transformers is kept: the tok2vec layer is called
once on the full list of docs, and backprop always runs (with zeros when there
is nothing to learn).
"""
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy
import torch
from torch.nn.functional import linear
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, get_array_module, torch2xp, xp2torch
from transformers.file_utils import ModelOutput

from .candidates import SpanBatch, whitespace_mask
from .losses import SpERTMTObjective, SpERTObjective

NEG_INF = float("-inf")
# At inference the head pools and classifies one block of whole pairing
# segments of about this many tokens at a time, so its memory does not grow
# with the length of a document (a batch of sentences is one block).
INFERENCE_BLOCK_TOKENS = 4096


@dataclass
class SpERTOutput:
    """What the model returns for a batch.

    entity_logits: (S, n_entity_outputs), one row per candidate span.
    relation_logits: (P, n_relation_outputs), one row per pair.
    pair_heads, pair_tails: (P,) indices into the spans.
    """

    entity_logits: numpy.ndarray
    relation_logits: numpy.ndarray
    pair_heads: numpy.ndarray
    pair_tails: numpy.ndarray


@registry.layers("spacy-spert.WordpieceListener.v1")
def build_wordpiece_listener(upstream: str = "*") -> Model[List[Doc], List[TransformerData]]:
    """A listener that receives the upstream ``transformer`` component's output
    for each doc: wordpiece vectors, alignment and [CLS] (unlike
    ``spacy-transformers.TransformerListener.v1``, which pools to tokens).

    upstream (str): The name of the transformer component, or "*" for any.
    RETURNS (Model[List[Doc], List[TransformerData]]): The listener.
    """
    return TransformerListener(upstream_name=upstream)


@registry.architectures("spacy-spert.SpERT.v1")
def build_spert_model(
    tok2vec: Model[List[Doc], List[TransformerData]],
    width_embedding_size: int = 25,
    max_width_embeddings: int = 100,
    dropout: float = 0.1,
    pair_batch_size: int = 4096,
    max_pair_entities_per_token: float = 0.5,
) -> Model[Tuple[List[Doc], SpanBatch], SpERTOutput]:
    """SpERT (Eberts & Ulges 2020) as a thinc model.

    tok2vec (Model): A wordpiece listener, e.g. ``spacy-spert.WordpieceListener.v1``.
    width_embedding_size (int): Size of the span width embedding (25 in the paper).
    max_width_embeddings (int): Rows of the width embedding; wider spans (gold
        entities seen in training) share the last row.
    dropout (float): Dropout before the entity and relation classifiers.
    pair_batch_size (int): At inference, candidate spans and relation pairs
        are classified in chunks of this many to bound memory on long docs.
    max_pair_entities_per_token (float): At inference, relation pairs are
        formed among at most max(10, ceil(ratio x segment tokens)) kept spans
        per segment, the highest-scoring ones. A trained model keeps far fewer
        (CoNLL04 has 0.15 entities per token); the bound stops an untrained
        model, which keeps most spans, from producing millions of pairs.
    RETURNS (Model[Tuple[List[Doc], SpanBatch], SpERTOutput]): The model. Its
        classifiers are built at ``initialize``, when the hidden width ("nI"),
        the number of entity types ("nE") and relation types ("nR") are known.
    """
    return _build_model(
        tok2vec,
        SpERTObjective(),
        width_embedding_size=width_embedding_size,
        max_width_embeddings=max_width_embeddings,
        dropout=dropout,
        pair_batch_size=pair_batch_size,
        max_pair_entities_per_token=max_pair_entities_per_token,
        entity_logits_in_relation=False,
    )


@registry.architectures("spacy-spert.SpERTMT.v1")
def build_spert_mt_model(
    tok2vec: Model[List[Doc], List[TransformerData]],
    width_embedding_size: int = 25,
    max_width_embeddings: int = 100,
    dropout: float = 0.1,
    pair_batch_size: int = 4096,
    max_pair_entities_per_token: float = 0.5,
    alpha: float = 1.0,
    beta: float = 1.0,
    m_plus: float = 2.5,
    m_minus: float = 0.5,
    gamma: float = 2.0,
    delta: float = 0.25,
    multitask: bool = True,
    iou_loss: bool = True,
    entity_logits_in_relation: bool = True,
) -> Model[Tuple[List[Doc], SpanBatch], SpERTOutput]:
    """SpERT.MT (Xue & Lu 2023) as a thinc model: SpERT's encoder, spans and
    localized context, with an identification head (one logit) and a bias-free
    class-score head (score_c = s . W_c) per stage; see ``SpERTMTObjective``.
    Use the component's ``threshold`` (theta, 0.85 in the paper) on the raw
    class scores, and 120 negative entities and relations per sentence.

    tok2vec, width_embedding_size, max_width_embeddings, dropout,
        pair_batch_size, max_pair_entities_per_token: as in ``SpERT.v1``.
    alpha (float): Weight of the identification losses.
    beta (float): Weight of the ranking losses.
    m_plus, m_minus (float): Margins of the ranking loss (2.5, 0.5).
    gamma (float): Scale of the ranking loss (2).
    delta (float): Balance of the IoU-scaled entity identification loss (0.25).
    multitask (bool): False: the ablation "-MTL", no identification losses.
    iou_loss (bool): False: the ablation "-EIL", plain BCE for entity identification.
    entity_logits_in_relation (bool): False: the ablation "-Entity Logits",
        the relation input lacks both spans' entity logits.
    RETURNS (Model[Tuple[List[Doc], SpanBatch], SpERTOutput]): The model.
    """
    objective = SpERTMTObjective(
        alpha=alpha, beta=beta, m_plus=m_plus, m_minus=m_minus, gamma=gamma, delta=delta,
        multitask=multitask, iou_loss=iou_loss,
    )
    return _build_model(
        tok2vec,
        objective,
        width_embedding_size=width_embedding_size,
        max_width_embeddings=max_width_embeddings,
        dropout=dropout,
        pair_batch_size=pair_batch_size,
        max_pair_entities_per_token=max_pair_entities_per_token,
        entity_logits_in_relation=entity_logits_in_relation,
        identification_heads=True,
    )


def _build_model(tok2vec: Model, objective, **head_config) -> Model[Tuple[List[Doc], SpanBatch], SpERTOutput]:
    """The thinc model shared by the architectures: ``objective`` and
    ``head_config`` (the ``SpERTHead`` arguments) are kept in its attrs; the
    head is built at ``initialize`` (see ``ensure_head``)."""
    return Model(
        "spert",
        forward,
        init=init,
        layers=[tok2vec],
        dims={"nI": None, "nE": None, "nR": None},
        attrs={"objective": objective, "head_config": head_config},
    )


def init(model: Model, X=None, Y=None) -> None:
    """Build the PyTorch head once the dims are set (see ``ensure_head``)."""
    ensure_head(model)


def ensure_head(model: Model) -> None:
    """Add the PyTorch head as the model's second layer if it is not there.

    Needs the dims "nI" (hidden width), "nE" and "nR" (entity and relation
    type counts); the component sets them from its cfg before loading weights.
    """
    if len(model.layers) > 1:
        return
    for dim in ("nI", "nE", "nR"):
        if not model.has_dim(dim):
            raise ValueError(f"The spert model needs the dim '{dim}' before it is initialized.")
    objective = model.attrs["objective"]
    cfg = model.attrs["head_config"]
    head = SpERTHead(
        hidden_width=model.get_dim("nI"),
        n_entity_outputs=objective.n_entity_outputs(model.get_dim("nE")),
        n_relation_outputs=objective.n_relation_outputs(model.get_dim("nR")),
        objective=objective,
        **cfg,
    )
    model.layers.append(PyTorchWrapper_v2(head))


def forward(model: Model, inputs: Tuple[List[Doc], SpanBatch], is_train: bool):
    docs, batch = inputs
    tok2vec, head = model.layers[0], model.layers[1]
    shim = head.shims[0]
    trf_datas, backprop_tok2vec = tok2vec(docs, is_train)
    feats = _wordpiece_features(docs, trf_datas, model.get_dim("nI"))
    device = shim.device
    hidden = xp2torch(model.ops.asarray(feats.hidden), requires_grad=is_train, device=device)

    def tensor(array):
        return None if array is None else torch.as_tensor(numpy.asarray(array), device=device)

    args = ArgsKwargs(
        args=(hidden,),
        kwargs={
            "align_rows": tensor(feats.align_rows),
            "align_tokens": tensor(feats.align_tokens),
            "token_cls_rows": tensor(feats.token_cls_rows),
            "n_tokens": int(batch.doc_offsets[-1]),
            "max_range": batch.max_range(),
            "span_starts": tensor(batch.starts),
            "span_ends": tensor(batch.ends),
            "span_segments": tensor(batch.segments),
            "pair_heads": tensor(batch.pair_heads),
            "pair_tails": tensor(batch.pair_tails),
            "threshold": float(batch.threshold),
            "blocks": None if batch.is_training else batch.blocks(INFERENCE_BLOCK_TOKENS),
        },
    )
    (ent_logits, rel_logits, pair_heads, pair_tails), backprop_head = shim(args, is_train)
    output = SpERTOutput(
        entity_logits=torch2xp(ent_logits.detach()),
        relation_logits=torch2xp(rel_logits.detach()),
        pair_heads=torch2xp(pair_heads),
        pair_tails=torch2xp(pair_tails),
    )

    def backprop(d_output: SpERTOutput) -> List[Doc]:
        grads = [(ent_logits, d_output.entity_logits), (rel_logits, d_output.relation_logits)]
        grads = [(y, xp2torch(dy, device=device)) for y, dy in grads if y.numel() and y.requires_grad]
        if grads:
            d_inputs = backprop_head(
                ArgsKwargs(args=([y for y, _ in grads],), kwargs={"grad_tensors": [dy for _, dy in grads]})
            )
            d_hidden = d_inputs.args[0]
        else:
            d_hidden = None
        d_hidden = (
            model.ops.alloc2f(*feats.hidden.shape)
            if d_hidden is None
            else model.ops.asarray(torch2xp(d_hidden))
        )
        return backprop_tok2vec(_split_gradients(trf_datas, d_hidden, feats.row_offsets))

    return output, backprop


@dataclass
class _Features:
    hidden: numpy.ndarray  # (R, H): every doc's last_hidden_state rows, stacked
    row_offsets: List[int]  # first row of each doc in ``hidden``
    align_rows: numpy.ndarray  # (A,) row of each token-wordpiece alignment entry
    align_tokens: numpy.ndarray  # (A,) global token of each alignment entry
    token_cls_rows: numpy.ndarray  # (N,) row of the [CLS] of the window holding the token


def _wordpiece_features(docs: List[Doc], trf_datas: List[TransformerData], width: int) -> _Features:
    """Stack the transformer output of a batch and index it by global token."""
    hiddens, row_offsets, align_rows, align_tokens, cls_rows = [], [], [], [], []
    n_rows = n_tokens = 0
    xp = numpy
    for doc, trf in zip(docs, trf_datas):
        row_offsets.append(n_rows)
        n = len(doc)
        lhs = trf.model_output.get("last_hidden_state") if n else None
        if lhs is None or lhs.size == 0:
            if n:
                # No transformer output for a non-empty doc: one zero row that
                # serves as its [CLS]; its tokens have no wordpieces.
                hiddens.append(numpy.zeros((1, width), dtype="float32"))
                cls_rows.append(numpy.full((n,), n_rows, dtype="int64"))
                n_rows += 1
                n_tokens += n
            continue
        xp = get_array_module(lhs)
        seq_len = lhs.shape[1]
        flat = lhs.reshape(-1, lhs.shape[-1])
        lengths = numpy.asarray(trf.align.lengths, dtype="int64")
        rows = numpy.asarray(trf.align.dataXd, dtype="int64").reshape(-1)
        _warn_if_truncated(doc, lengths)
        tokens = numpy.repeat(numpy.arange(n, dtype="int64"), lengths)
        align_rows.append(rows + n_rows)
        align_tokens.append(tokens + n_tokens)
        # [CLS] of the window that holds the token's first wordpiece; tokens
        # without wordpieces take the previous token's (or the first window's).
        first = numpy.full((n,), -1, dtype="int64")
        has_wp = lengths > 0
        starts = numpy.cumsum(lengths) - lengths
        first[has_wp] = rows[starts[has_wp]] // seq_len * seq_len
        idx = numpy.where(has_wp, numpy.arange(n), -1)
        numpy.maximum.accumulate(idx, out=idx)
        token_cls = numpy.where(idx >= 0, first[numpy.clip(idx, 0, None)], 0)
        cls_rows.append(token_cls + n_rows)
        hiddens.append(flat)
        n_rows += flat.shape[0]
        n_tokens += n
    if hiddens:
        hidden = xp.concatenate([xp.asarray(h, dtype="float32") for h in hiddens])
    else:
        hidden = numpy.zeros((0, width), dtype="float32")
    return _Features(
        hidden=hidden,
        row_offsets=row_offsets,
        align_rows=_cat(align_rows),
        align_tokens=_cat(align_tokens),
        token_cls_rows=_cat(cls_rows),
    )


def _warn_if_truncated(doc: Doc, lengths: numpy.ndarray) -> None:
    """Warn when tokens other than whitespace got no wordpiece: the
    transformer cut a window that was longer than its maximum length, and
    nothing in the cut part can be found."""
    if lengths.all():
        return
    lost = numpy.flatnonzero((lengths == 0) & ~whitespace_mask(doc))
    if len(lost):
        warnings.warn(
            f"[spacy-spert] {len(lost)} of {len(doc)} tokens of a doc got no wordpiece "
            f"(first: token {lost[0]}, {doc[int(lost[0])].text!r}): the transformer truncated a window longer "
            f"than its maximum length, and no entity can be found in those tokens. Encode docs in shorter "
            f"windows, e.g. [components.transformer.model.get_spans] "
            f"@span_getters = \"spacy-spert.sentence_windows.v1\".",
            stacklevel=2,
        )


def _cat(arrays: List[numpy.ndarray]) -> numpy.ndarray:
    return numpy.concatenate(arrays) if arrays else numpy.zeros((0,), dtype="int64")


def _split_gradients(trf_datas: List[TransformerData], d_hidden, row_offsets: List[int]) -> List[TransformerData]:
    """Cut the stacked gradient back into one ``TransformerData`` per doc whose
    model_output holds only last_hidden_state, as spacy-transformers expects."""
    shapes = [t.model_output.get("last_hidden_state") for t in trf_datas]
    shapes = [x.shape for x in shapes if x is not None and x.size]
    d_trf_datas = []
    for trf, start in zip(trf_datas, row_offsets):
        lhs = trf.model_output.get("last_hidden_state")
        if lhs is None or lhs.size == 0:
            # A doc without windows (empty) still sends back a gradient with
            # zero windows, so that the transformer can stack the batch.
            empty = d_hidden[:0].reshape((0,) + tuple(shapes[0][1:])) if shapes else d_hidden[:0]
            d_trf_datas.append(
                TransformerData(wordpieces=trf.wordpieces, model_output=ModelOutput(last_hidden_state=empty), align=trf.align)
            )
            continue
        n_rows = lhs.shape[0] * lhs.shape[1]
        d_lhs = d_hidden[start : start + n_rows].reshape(lhs.shape)
        d_trf_datas.append(
            TransformerData(
                wordpieces=trf.wordpieces,
                model_output=ModelOutput(last_hidden_state=d_lhs),
                align=trf.align,
            )
        )
    return d_trf_datas


class SpERTHead(torch.nn.Module):
    """Span pooling, entity and relation classifiers (PyTorch).

    hidden_width (int): The transformer's hidden width H.
    n_entity_outputs (int): Columns of the entity logits.
    n_relation_outputs (int): Columns of the relation logits.
    objective: Decides which spans are kept as entities at inference.
    width_embedding_size, max_width_embeddings, dropout, pair_batch_size: see
        ``build_spert_model``.
    entity_logits_in_relation (bool): Append both spans' entity logits (all
        n_entity_outputs columns) to the relation representation (SpERT.MT).
    identification_heads (bool): SpERT.MT's two heads per stage: column 0 of
        the logits comes from ``entity_identifier`` / ``relation_identifier``
        (a linear layer to one logit), columns 1.. from ``entity_classifier``
        / ``relation_classifier``, then a bias-free dot product s . W_c. All
        False (SpERT): one linear layer with bias per stage. All layers
        are initialized N(0, 0.02) with zero biases, as BERT's own layers.
    """

    def __init__(
        self,
        hidden_width: int,
        n_entity_outputs: int,
        n_relation_outputs: int,
        objective,
        width_embedding_size: int = 25,
        max_width_embeddings: int = 100,
        dropout: float = 0.1,
        pair_batch_size: int = 4096,
        max_pair_entities_per_token: float = 0.5,
        entity_logits_in_relation: bool = False,
        identification_heads: bool = False,
    ):
        super().__init__()
        self.n_entity_outputs = n_entity_outputs
        self.n_relation_outputs = n_relation_outputs
        self.identification_heads = identification_heads
        self.objective = objective
        self.max_width = max_width_embeddings
        self.pair_batch_size = pair_batch_size
        self.max_pair_entities_per_token = max_pair_entities_per_token
        self.entity_logits_in_relation = entity_logits_in_relation
        self.width_embedding = torch.nn.Embedding(max_width_embeddings + 1, width_embedding_size)
        self.dropout = torch.nn.Dropout(dropout)
        ent_in = 2 * hidden_width + width_embedding_size
        rel_in = 3 * hidden_width + 2 * width_embedding_size
        if entity_logits_in_relation:
            rel_in += 2 * n_entity_outputs
        if identification_heads:
            self.entity_identifier = torch.nn.Linear(ent_in, 1)
            self.entity_classifier = torch.nn.Linear(ent_in, n_entity_outputs - 1, bias=False)
            self.relation_identifier = torch.nn.Linear(rel_in, 1)
            self.relation_classifier = torch.nn.Linear(rel_in, n_relation_outputs - 1, bias=False)
        else:
            self.entity_classifier = torch.nn.Linear(ent_in, n_entity_outputs)
            self.relation_classifier = torch.nn.Linear(rel_in, n_relation_outputs)
        # BERT's initialization, which SpERT and SpERT.MT (BertPreTrainedModel
        # subclasses) apply to their own layers: N(0, 0.02), zero biases.
        for module in self.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                torch.nn.init.zeros_(module.bias)

    def _classify_entities(self, x: torch.Tensor) -> torch.Tensor:
        if self.identification_heads:
            return torch.cat([self.entity_identifier(x), self.entity_classifier(x)], dim=1)
        return self.entity_classifier(x)

    def _classify_relations(self, x: torch.Tensor) -> torch.Tensor:
        if self.identification_heads:
            return torch.cat([self.relation_identifier(x), self.relation_classifier(x)], dim=1)
        return self.relation_classifier(x)

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
        span_segments: torch.Tensor,
        pair_heads: Optional[torch.Tensor] = None,
        pair_tails: Optional[torch.Tensor] = None,
        threshold: float = 0.5,
        blocks: Optional[List[Tuple[int, int, int, int]]] = None,
    ):
        """Classify the candidate spans and the pairs.

        hidden: (R, H) wordpiece vectors; align_rows/align_tokens: (A,) the
        token-to-wordpiece alignment; token_cls_rows: (N,) the [CLS] row per
        token; span_*: (S,) candidates in global token offsets; pair_*: (P,)
        pairs to classify (training), or None to build them from the kept
        spans (inference); blocks: at inference, (first span, end span,
        first token, end token) of each block of whole segments
        (``SpanBatch.blocks``; None: one block).
        RETURNS: entity logits (S, E), relation logits (P, R), pair heads and
            tails (P,).
        """
        n_rel_out = self.n_relation_outputs
        if span_starts.shape[0] == 0:
            empty = span_starts.new_zeros((0,))
            return (
                hidden.new_zeros((0, self.n_entity_outputs)),
                hidden.new_zeros((0, n_rel_out)),
                empty,
                empty,
            )
        if pair_heads is not None:  # training: the sampled spans and pairs
            pool = RangeMax(hidden, align_rows, align_tokens, n_tokens, max_range)
            span_pool, widths, entity_logits = self._entities(pool, hidden, token_cls_rows, span_starts, span_ends)
            relation_logits = self._relation_logits(
                pool, span_starts, span_ends, span_pool, widths, entity_logits, pair_heads, pair_tails
            )
            return entity_logits, relation_logits, pair_heads, pair_tails
        # Inference, one block of whole segments at a time: the range-max
        # table and the span features of a long doc never exist at once.
        if blocks is None:
            blocks = [(0, int(span_starts.shape[0]), 0, n_tokens)]
        outputs = []
        bounds = torch.searchsorted(align_tokens, torch.tensor([t for b in blocks for t in b[2:]], device=align_tokens.device))
        for i, (s0, s1, t0, t1) in enumerate(blocks):
            a0, a1 = int(bounds[2 * i]), int(bounds[2 * i + 1])
            pool = RangeMax(hidden, align_rows[a0:a1], align_tokens[a0:a1] - t0, t1 - t0, min(max_range, t1 - t0))
            ent, rel, heads, tails = self._predict_block(
                pool, hidden, token_cls_rows[t0:t1], span_starts[s0:s1] - t0, span_ends[s0:s1] - t0,
                span_segments[s0:s1], threshold,
            )
            outputs.append((ent, rel, heads + s0, tails + s0))
        return tuple(torch.cat(parts) for parts in zip(*outputs))

    def _predict_block(self, pool, hidden, token_cls_rows, span_starts, span_ends, span_segments, threshold):
        """Entity logits of all candidates of a block, and relation logits of
        the pairs of its kept spans (head and tail indices into the block's
        spans).

        The same numbers as the classifiers on the concatenated inputs (the
        head is in eval mode, without dropout), computed part by part with
        each linear map split by input columns, so that no (spans, 2H + W) or
        (pairs, 3H + ...) input is built: the [CLS] part is projected once per
        token, the width part once per width, and a pair's head and tail parts
        once per kept span; per pair only its context is pooled and projected.
        Candidates and pairs are processed in chunks of ``pair_batch_size``.
        """
        chunk = self.pair_batch_size
        width = hidden.shape[1]
        weight, bias = self._stage_weight("entity")
        cls_part = linear(hidden.index_select(0, token_cls_rows), weight[:, :width])
        width_part = linear(self.width_embedding.weight, weight[:, 2 * width :])
        n_spans = int(span_starts.shape[0])
        span_pool = None
        logits = []
        for i in range(0, n_spans, chunk):
            starts, ends = span_starts[i : i + chunk], span_ends[i : i + chunk]
            pooled = pool(starts, ends)
            if n_spans <= chunk:  # one chunk: keep the pools for the pairs
                span_pool = pooled
            logits.append(
                linear(pooled, weight[:, width : 2 * width], bias)
                + cls_part.index_select(0, starts)
                + width_part.index_select(0, (ends - starts).clamp(max=self.max_width))
            )
        entity_logits = torch.cat(logits)
        keep = self.objective.keep_entities(entity_logits, threshold)
        kept = keep.nonzero().squeeze(1)
        if kept.numel() > 10:
            _, scores = self.objective.decode_entities(entity_logits.index_select(0, kept), threshold)
            limits = segment_token_counts(span_starts, span_ends, span_segments)
            limits = torch.ceil(limits * self.max_pair_entities_per_token).long().clamp(min=10)
            kept = top_per_segment(kept, scores, span_segments, limits)
        local = torch.arange(kept.numel(), device=kept.device)
        heads, tails = pairs_within_segments(local, span_segments.index_select(0, kept))
        k_starts, k_ends = span_starts.index_select(0, kept), span_ends.index_select(0, kept)
        k_pool = pool(k_starts, k_ends) if span_pool is None else span_pool.index_select(0, kept)
        k_width = self.width_embedding((k_ends - k_starts).clamp(max=self.max_width))

        weight, bias = self._stage_weight("relation")
        sizes = [width] * 3 + [k_width.shape[1]] * 2
        if self.entity_logits_in_relation:
            sizes += [self.n_entity_outputs] * 2
        w_ctx, w_head, w_tail, w_head_width, w_tail_width, *w_logits = torch.split(weight, sizes, dim=1)
        head_part = linear(k_pool, w_head) + linear(k_width, w_head_width)
        tail_part = linear(k_pool, w_tail) + linear(k_width, w_tail_width)
        if self.entity_logits_in_relation:
            k_logits = entity_logits.index_select(0, kept)
            head_part = head_part + linear(k_logits, w_logits[0])
            tail_part = tail_part + linear(k_logits, w_logits[1])
        pieces = []
        for i in range(0, int(heads.shape[0]), chunk):
            h, t = heads[i : i + chunk], tails[i : i + chunk]
            ctx_start = torch.minimum(k_ends.index_select(0, h), k_ends.index_select(0, t))
            ctx_end = torch.maximum(k_starts.index_select(0, h), k_starts.index_select(0, t))
            pieces.append(
                linear(pool(ctx_start, ctx_end), w_ctx, bias) + head_part.index_select(0, h) + tail_part.index_select(0, t)
            )
        relation_logits = torch.cat(pieces) if pieces else hidden.new_zeros((0, self.n_relation_outputs))
        return entity_logits, relation_logits, kept.index_select(0, heads), kept.index_select(0, tails)

    def _stage_weight(self, stage: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """The classifier(s) of a stage ("entity" or "relation") as one linear
        map: weight (outputs, inputs) and bias (outputs,), the identification
        row first when there are identification heads."""
        classifier = getattr(self, f"{stage}_classifier")
        if not self.identification_heads:
            return classifier.weight, classifier.bias
        identifier = getattr(self, f"{stage}_identifier")
        bias = classifier.bias
        if bias is None:  # SpERT.MT's class scores are a bias-free dot product
            bias = identifier.bias.new_zeros((classifier.weight.shape[0],))
        return torch.cat([identifier.weight, classifier.weight]), torch.cat([identifier.bias, bias])

    def _entities(self, pool, hidden, token_cls_rows, starts, ends):
        """Training: span max-pools (S, H), width embeddings (S, W) and entity
        logits (S, E) from the concatenated, dropped-out input."""
        span_pool = pool(starts, ends)
        widths = self.width_embedding((ends - starts).clamp(max=self.max_width))
        cls = hidden.index_select(0, token_cls_rows.index_select(0, starts))
        logits = self._classify_entities(self.dropout(torch.cat([cls, span_pool, widths], dim=1)))
        return span_pool, widths, logits

    def _relation_logits(self, pool, starts, ends, span_pool, widths, entity_logits, heads, tails):
        """Training: relation logits (P, R) of the pairs from the concatenated,
        dropped-out input [context; head; tail; widths; (entity logits)]."""
        ctx_start = torch.minimum(ends.index_select(0, heads), ends.index_select(0, tails))
        ctx_end = torch.maximum(starts.index_select(0, heads), starts.index_select(0, tails))
        parts = [
            pool(ctx_start, ctx_end),
            span_pool.index_select(0, heads),
            span_pool.index_select(0, tails),
            widths.index_select(0, heads),
            widths.index_select(0, tails),
        ]
        if self.entity_logits_in_relation:
            parts += [entity_logits.index_select(0, heads), entity_logits.index_select(0, tails)]
        return self._classify_relations(self.dropout(torch.cat(parts, dim=1)))


class RangeMax:
    """Max-pool of token ranges from a sparse table of range maxima.

    Token vectors are the max over each token's wordpieces. Level k of the
    table holds the max over 2**k consecutive tokens, so the max over
    [start, end) is max(table[k, start], table[k, end - 2**k]) with
    k = floor(log2(end - start)). A range that is empty or covers no wordpiece
    pools to zeros. Levels are built up to the longest range that can be asked
    for (``SpanBatch.max_range``: the longest doc in training, the widest
    pairing segment at inference), so memory is O(N log L x H).
    """

    def __init__(self, hidden, align_rows, align_tokens, n_tokens: int, max_range: int):
        width = hidden.shape[1]
        tokens = hidden.new_full((n_tokens, width), NEG_INF)
        index = align_tokens.unsqueeze(1).expand(-1, width)
        tokens = tokens.scatter_reduce(0, index, hidden.index_select(0, align_rows), reduce="amax")
        has_wp = torch.zeros((n_tokens,), dtype=torch.long, device=hidden.device)
        has_wp[align_tokens] = 1
        self.covered = torch.cat([has_wp.new_zeros((1,)), has_wp.cumsum(0)])
        levels = [tokens]
        step = 1
        while step * 2 <= max_range:
            prev = levels[-1]
            shifted = torch.cat([prev[step:], prev.new_full((step, width), NEG_INF)])
            levels.append(torch.maximum(prev, shifted))
            step *= 2
        self.table = torch.cat(levels)
        self.n_tokens = n_tokens
        # floor(log2(length)) for every length a range may have (0 -> 0)
        lengths = torch.arange(n_tokens + 1, device=hidden.device).clamp(min=1)
        self.log2 = (torch.frexp(lengths.double())[1] - 1).long()

    def __call__(self, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """RETURNS (torch.Tensor): (len(starts), H) the max over [start, end)."""
        covered = self.covered.index_select(0, ends) - self.covered.index_select(0, starts)
        valid = (ends > starts) & (covered > 0)
        starts = torch.where(valid, starts, torch.zeros_like(starts))
        ends = torch.where(valid, ends, torch.ones_like(ends))
        level = self.log2.index_select(0, ends - starts)
        base = level * self.n_tokens
        a = self.table.index_select(0, base + starts)
        b = self.table.index_select(0, base + ends - (1 << level))
        return torch.maximum(a, b).masked_fill(~valid.unsqueeze(1), 0.0)


def pairs_within_segments(kept: torch.Tensor, segments: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (a, b), a != b, of kept spans in the same segment.

    kept (torch.Tensor): (K,) indices of the kept spans.
    segments (torch.Tensor): (S,) segment id of every span.
    RETURNS (Tuple[torch.Tensor, torch.Tensor]): head and tail span indices.
    """
    if kept.numel() < 2:
        empty = kept.new_zeros((0,))
        return empty, empty
    seg = segments.index_select(0, kept)
    seg, order = torch.sort(seg, stable=True)
    kept = kept.index_select(0, order)
    _, counts = torch.unique_consecutive(seg, return_counts=True)
    group_start = torch.cumsum(counts, 0) - counts
    group = torch.repeat_interleave(torch.arange(len(counts), device=kept.device), counts)
    per_head = counts.index_select(0, group)  # partners (incl. itself) per kept span
    head_pos = torch.repeat_interleave(torch.arange(len(kept), device=kept.device), per_head)
    first = torch.cumsum(per_head, 0) - per_head
    local = torch.arange(head_pos.numel(), device=kept.device) - torch.repeat_interleave(first, per_head)
    tail_pos = group_start.index_select(0, group.index_select(0, head_pos)) + local
    mask = head_pos != tail_pos
    return kept.index_select(0, head_pos[mask]), kept.index_select(0, tail_pos[mask])


def segment_token_counts(starts: torch.Tensor, ends: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """The number of tokens each segment's candidates cover (max end - min start),
    indexed by segment id."""
    n = int(segments.max()) + 1
    first = torch.full((n,), int(ends.max()), dtype=starts.dtype, device=starts.device)
    last = torch.zeros((n,), dtype=ends.dtype, device=ends.device)
    first = first.scatter_reduce(0, segments, starts, reduce="amin")
    last = last.scatter_reduce(0, segments, ends, reduce="amax")
    return (last - first).clamp(min=0).double()


def top_per_segment(kept: torch.Tensor, scores: torch.Tensor, segments: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """The kept spans with the highest scores, at most ``limits[segment]`` per segment.

    kept (torch.Tensor): (K,) span indices; scores (torch.Tensor): (K,) their scores.
    segments (torch.Tensor): (S,) segment id per span; limits: (n_segments,).
    RETURNS (torch.Tensor): the selected span indices (grouped by segment).
    """
    by_score = torch.argsort(-scores, stable=True)
    seg = segments.index_select(0, kept.index_select(0, by_score))
    by_segment = torch.argsort(seg, stable=True)
    order = by_score.index_select(0, by_segment)
    seg = seg.index_select(0, by_segment)
    _, counts = torch.unique_consecutive(seg, return_counts=True)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.arange(seg.numel(), device=seg.device) - first
    return kept.index_select(0, order)[rank < limits.index_select(0, seg)]
