"""The SpERT model as a thinc model: the transformer listener and the PyTorch head.

``build_spert_model`` (registered as ``spacy-spert.SpERT.v1``; SpERT.MT is
``build_spert_mt_model``, ``spacy-spert.SpERTMT.v1``) chains a transformer
listener (``tok2vec``: one ``TransformerData`` per doc with the wordpiece
vectors, the token-to-wordpiece alignment and [CLS]) with ``SpERTHead``
(``pytorch_model.py``: pooling and the entity and relation classifiers),
built at ``initialize`` once the hidden width and label counts are known. The
sublayers are found by name: ``model.get_ref("tok2vec")``,
``model.get_ref("head")``.

The model's input and output:

* training (``begin_update``): ``(docs, TrainingBatch)`` -> ``SpERTLogits``,
  the logits of the sampled spans and pairs, for the objective's loss;
* inference (``predict``): ``(docs, Candidates)`` -> ``SpERTPredictions``,
  the candidates classified as entities and the relations among them, decoded
  by the objective with the threshold in ``model.attrs["threshold"]``.

The listener rule of spacy-transformers is kept: the tok2vec layer is called
once on the full list of docs, and backprop always runs (with zeros when there
is nothing to learn).
"""
import warnings
from dataclasses import dataclass
from typing import List, Tuple, Union

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, get_array_module, torch2xp, xp2torch
from transformers.file_utils import ModelOutput

from .suggesters import Candidates, TrainingBatch, whitespace_mask
from .objectives import SpERTMTObjective, SpERTObjective
from .pytorch.head import HeadPredictions, SpERTHead

# At inference the head pools and classifies one block of whole pairing
# groups of about this many tokens at a time, so its memory does not grow
# with the length of a document (a batch of sentences is one block).
INFERENCE_BLOCK_TOKENS = 4096
_MT = SpERTMTObjective()  # the defaults of SpERT.MT's settings


@dataclass
class SpERTLogits:
    """What the model returns in training, and the gradient it takes back.

    entity_logits: (S, n_entity_outputs), one row per sampled span.
    relation_logits: (P, n_relation_outputs), one row per sampled pair.
    """

    entity_logits: numpy.ndarray
    relation_logits: numpy.ndarray


@dataclass
class SpERTPredictions:
    """What the model returns at inference: decoded entities and relations.

    entity_spans: (K,) indices into the candidates of the spans that are
        entities, in candidate order; entity_labels: (K,) their label index
        (into the entity labels); entity_scores: (K,) float32 scores.
    relation_heads, relation_tails: (Q,) indices into the candidates (always
        entities); relation_labels: (Q,) label index; relation_scores: (Q,).
    """

    entity_spans: numpy.ndarray
    entity_labels: numpy.ndarray
    entity_scores: numpy.ndarray
    relation_heads: numpy.ndarray
    relation_tails: numpy.ndarray
    relation_labels: numpy.ndarray
    relation_scores: numpy.ndarray


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
) -> Model:
    """SpERT (Eberts & Ulges 2020) as a thinc model.

    tok2vec (Model): A wordpiece listener, e.g. ``spacy-spert.WordpieceListener.v1``.
    width_embedding_size (int): Size of the span width embedding (25 in the paper).
    max_width_embeddings (int): Rows of the width embedding; wider spans (gold
        entities seen in training) share the last row.
    dropout (float): Dropout before the entity and relation classifiers.
    pair_batch_size (int): At inference, candidate spans and relation pairs
        are classified in chunks of at most this many (and at most 1024, a
        size whose pooled vectors stay in the CPU's cache) to bound memory on
        long docs.
    max_pair_entities_per_token (float): At inference, relation pairs are
        formed among at most max(10, ceil(ratio x group tokens)) kept spans
        per pairing group, the highest-scoring ones. A trained model keeps far
        fewer (CoNLL04 has 0.15 entities per token); the bound stops an
        untrained model, which keeps most spans, from producing millions of pairs.
    RETURNS (Model): The model, ``(docs, TrainingBatch) -> SpERTLogits`` in
        training and ``(docs, Candidates) -> SpERTPredictions`` at inference.
        Its head is built at ``initialize``, when the hidden width ("nI"), the
        number of entity types ("nE") and relation types ("nR") are known.
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
        identification_heads=False,
    )


@registry.architectures("spacy-spert.SpERTMT.v1")
def build_spert_mt_model(
    tok2vec: Model[List[Doc], List[TransformerData]],
    width_embedding_size: int = 25,
    max_width_embeddings: int = 100,
    dropout: float = 0.1,
    pair_batch_size: int = 4096,
    max_pair_entities_per_token: float = 0.5,
    alpha: float = _MT.alpha,
    beta: float = _MT.beta,
    m_plus: float = _MT.m_plus,
    m_minus: float = _MT.m_minus,
    gamma: float = _MT.gamma,
    delta: float = _MT.delta,
    multitask: bool = _MT.multitask,
    iou_loss: bool = _MT.iou_loss,
    entity_logits_in_relation: bool = True,
) -> Model:
    """SpERT.MT (Xue & Lu 2023) as a thinc model: SpERT's encoder, spans and
    localized context, with an identification head (one logit) and a bias-free
    class-score head (score_c = s . W_c) per stage. The loss settings (alpha
    ... iou_loss) are those of ``SpERTMTObjective`` (losses.py), which
    documents them and holds their defaults (the paper's). Use the component's
    ``threshold`` (theta, 0.85 in the paper) on the raw class scores, and 120
    negative entities and relations per sentence.

    tok2vec, width_embedding_size, max_width_embeddings, dropout,
        pair_batch_size, max_pair_entities_per_token: as in ``SpERT.v1``.
    alpha, beta, m_plus, m_minus, gamma, delta, multitask, iou_loss: see
        ``SpERTMTObjective``; multitask = false is the ablation "-MTL",
        iou_loss = false "-EIL".
    entity_logits_in_relation (bool): False: the ablation "-Entity Logits",
        the relation input lacks both spans' entity logits.
    RETURNS (Model): The model (see ``build_spert_model``).
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


def _build_model(tok2vec: Model, objective, **head_config) -> Model:
    """The thinc model shared by the architectures: ``objective`` and
    ``head_config`` (the ``SpERTHead`` arguments) are kept in its attrs; the
    head is built at ``initialize`` (see ``build_head``)."""
    return Model(
        "spert",
        forward,
        init=init,
        layers=[tok2vec],
        refs={"tok2vec": tok2vec, "head": None},
        dims={"nI": None, "nE": None, "nR": None},
        attrs={"objective": objective, "head_config": head_config, "threshold": 0.5},
    )


def init(model: Model, X=None, Y=None) -> None:
    """Build the PyTorch head once the dims are set (see ``build_head``)."""
    build_head(model)


def has_head(model: Model) -> bool:
    """RETURNS (bool): Whether the model's head is built (it is initialized
    or loaded)."""
    return model.maybe_get_ref("head") is not None


def build_head(model: Model) -> None:
    """Build the PyTorch head and add it as the sublayer "head", unless it is
    there.

    Needs the dims "nI" (hidden width), "nE" and "nR" (entity and relation
    type counts); the component sets them from its cfg before loading weights.
    """
    if has_head(model):
        return
    for dim in ("nI", "nE", "nR"):
        if not model.has_dim(dim):
            raise ValueError(f"The spert model needs the dim '{dim}' before it is initialized.")
    objective = model.attrs["objective"]
    head = PyTorchWrapper_v2(
        SpERTHead(
            hidden_width=model.get_dim("nI"),
            n_entity_outputs=objective.n_entity_outputs(model.get_dim("nE")),
            n_relation_outputs=objective.n_relation_outputs(model.get_dim("nR")),
            **model.attrs["head_config"],
        )
    )
    model.layers.append(head)
    model.set_ref("head", head)


def forward(model: Model, inputs: Tuple[List[Doc], Union[TrainingBatch, Candidates]], is_train: bool):
    """Training: ``(docs, TrainingBatch)`` -> ``SpERTLogits``, with a backprop
    callback that takes the logits' gradient. Inference: ``(docs,
    Candidates)`` -> ``SpERTPredictions``."""
    docs, spans = inputs
    trf_datas, backprop_tok2vec = model.get_ref("tok2vec")(docs, is_train)
    feats = _wordpiece_features(docs, trf_datas, model.get_dim("nI"))
    head = model.get_ref("head")
    device = _head_device(head)
    if not is_train and isinstance(feats.hidden, numpy.ndarray) and device.type == "cpu":
        hidden = torch.from_numpy(feats.hidden)  # what xp2torch does, without its checks
    else:
        hidden = xp2torch(model.ops.asarray(feats.hidden), requires_grad=is_train, device=device)
    if not is_train:
        objective, threshold = model.attrs["objective"], float(model.attrs["threshold"])
        output = _predict_head(
            head,
            hidden,
            align_rows=feats.align_rows,
            align_tokens=feats.align_tokens,
            cls_rows=feats.cls_rows,
            token_windows=feats.token_windows,
            n_tokens=int(spans.doc_offsets[-1]),
            max_range=spans.max_range(),
            span_starts=spans.starts,
            span_ends=spans.ends,
            span_groups=spans.groups,
            blocks=spans.blocks(INFERENCE_BLOCK_TOKENS),
            objective=objective,
            threshold=threshold,
            given_entities=spans.given_entities,
            all_covered=feats.all_covered,
        )
        return _decode(objective, threshold, output, given_entities=spans.given_entities), _no_backprop

    def tensor(array) -> torch.Tensor:
        return torch.as_tensor(numpy.asarray(array), device=device)

    kwargs = {
        "align_rows": tensor(feats.align_rows),
        "align_tokens": tensor(feats.align_tokens),
        "token_cls_rows": tensor(feats.token_cls_rows),
        "n_tokens": int(spans.doc_offsets[-1]),
        "max_range": spans.max_range(),
        "span_starts": tensor(spans.starts),
        "span_ends": tensor(spans.ends),
        "pair_heads": tensor(spans.pair_heads),
        "pair_tails": tensor(spans.pair_tails),
    }
    (ent_logits, rel_logits), backprop_head = head.shims[0](ArgsKwargs(args=(hidden,), kwargs=kwargs), is_train)
    output = SpERTLogits(torch2xp(ent_logits.detach()), torch2xp(rel_logits.detach()))

    def backprop(d_output: SpERTLogits) -> List[Doc]:
        grads = [(ent_logits, d_output.entity_logits), (rel_logits, d_output.relation_logits)]
        grads = [(y, xp2torch(dy, device=device)) for y, dy in grads if y.numel() and y.requires_grad]
        d_hidden = None
        if grads:
            d_inputs = backprop_head(
                ArgsKwargs(args=([y for y, _ in grads],), kwargs={"grad_tensors": [dy for _, dy in grads]})
            )
            d_hidden = d_inputs.args[0]
        d_hidden = (
            model.ops.alloc2f(*feats.hidden.shape) if d_hidden is None else model.ops.asarray(torch2xp(d_hidden))
        )
        return backprop_tok2vec(_split_gradients(trf_datas, d_hidden, feats.row_offsets))

    return output, backprop


def _head_device(head: Model) -> torch.device:
    """The device of the head's parameters (thinc's shim property asks the
    current ops each time; this is the same answer at a fraction of the cost)."""
    return head.shims[0]._model.width_embedding.weight.device


def _predict_head(head: Model, hidden: torch.Tensor, **kwargs) -> HeadPredictions:
    """Run ``SpERTHead.predict`` without autograd. (Its computation uses no
    dropout, so the module needs no switch to eval mode and back, which
    visits every submodule twice per batch.)"""
    module: SpERTHead = head.shims[0]._model
    with torch.inference_mode():
        return module.predict(hidden, **kwargs)


def _decode(objective, threshold: float, output: HeadPredictions, given_entities: bool = False) -> SpERTPredictions:
    """Turn the head's inference output into entities and relations with the
    objective's decoding rule (``losses.py``): a span is an entity when its
    decoded label is not "none" (every span, with ``given_entities``, whose
    labels are then not the model's to decide); a pair holds each relation
    type whose score is >= threshold."""
    labels = output.entity_labels
    rel_scores = objective.decode_relations(output.relation_logits.cpu().numpy(), threshold)
    if given_entities:
        kept = numpy.arange(labels.shape[0])
        labels = numpy.maximum(labels, 1)
    else:
        kept = (labels > 0).nonzero()[0]  # (the methods: numpy's functions add a Python call each)
    hit_pairs, hit_types = (rel_scores >= threshold).nonzero()
    return SpERTPredictions(
        entity_spans=kept,
        entity_labels=labels[kept] - 1,
        entity_scores=output.entity_scores[kept].astype("float32", copy=False),
        relation_heads=output.pair_heads[hit_pairs],
        relation_tails=output.pair_tails[hit_pairs],
        relation_labels=hit_types,
        relation_scores=rel_scores[hit_pairs, hit_types],
    )


def _no_backprop(d_output):
    raise ValueError("The spert model's inference output has no gradient: train with TrainingBatch inputs.")


@dataclass
class _Features:
    hidden: numpy.ndarray  # (R, H): every doc's last_hidden_state rows, stacked
    row_offsets: List[int]  # first row of each doc in ``hidden``
    align_rows: numpy.ndarray  # (A,) row of each token-wordpiece alignment entry
    align_tokens: numpy.ndarray  # (A,) global token of each alignment entry
    cls_rows: numpy.ndarray  # (n_windows,) the row of each transformer window's [CLS]
    token_windows: numpy.ndarray  # (N,) the window that holds the token
    all_covered: bool  # every token has at least one wordpiece

    @property
    def token_cls_rows(self) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): (N,) the [CLS] row of each token's window."""
        return self.cls_rows[self.token_windows]


def _wordpiece_features(docs: List[Doc], trf_datas: List[TransformerData], width: int) -> _Features:
    """Stack the transformer output of a batch and index it by global token.
    A token's window is the one that holds its first wordpiece; tokens
    without wordpieces take the previous token's (or the first window)."""
    hiddens, row_offsets, align_rows, align_tokens, cls_rows, token_windows = [], [], [], [], [], []
    n_rows = n_tokens = n_windows = 0
    all_covered = True
    xp = numpy
    for doc, trf in zip(docs, trf_datas):
        row_offsets.append(n_rows)
        n = len(doc)
        lhs = trf.model_output.get("last_hidden_state") if n else None
        if lhs is None or lhs.size == 0:
            if n:
                # No transformer output for a non-empty doc: one zero row that
                # serves as its [CLS]; its tokens have no wordpieces.
                all_covered = False
                hiddens.append(numpy.zeros((1, width), dtype="float32"))
                cls_rows.append(numpy.asarray([n_rows], dtype="int64"))
                token_windows.append(numpy.full((n,), n_windows, dtype="int64"))
                n_rows += 1
                n_windows += 1
                n_tokens += n
            continue
        xp = get_array_module(lhs)
        seq_len = lhs.shape[1]
        flat = lhs.reshape(-1, lhs.shape[-1])
        lengths = numpy.asarray(trf.align.lengths, dtype="int64")
        rows = numpy.asarray(trf.align.dataXd, dtype="int64").reshape(-1)
        if numpy.count_nonzero(lengths) == len(lengths):  # every token has wordpieces
            if lhs.shape[0] == 1:
                window = numpy.zeros((n,), dtype="int64")
            else:
                window = rows[numpy.cumsum(lengths) - lengths] // seq_len
        else:
            all_covered = False
            _warn_if_truncated(doc, lengths)
            has_wp = lengths > 0
            first = numpy.zeros((n,), dtype="int64")
            first[has_wp] = rows[(numpy.cumsum(lengths) - lengths)[has_wp]] // seq_len
            idx = numpy.where(has_wp, numpy.arange(n), -1)
            numpy.maximum.accumulate(idx, out=idx)
            window = numpy.where(idx >= 0, first[numpy.clip(idx, 0, None)], 0)
        align_rows.append(rows + n_rows if n_rows else rows)
        align_tokens.append(numpy.arange(n_tokens, n_tokens + n, dtype="int64").repeat(lengths))
        cls_rows.append(numpy.arange(n_rows, n_rows + seq_len * lhs.shape[0], seq_len, dtype="int64"))
        token_windows.append(window + n_windows if n_windows else window)
        hiddens.append(flat)
        n_rows += flat.shape[0]
        n_windows += lhs.shape[0]
        n_tokens += n
    if len(hiddens) == 1:
        hidden = xp.asarray(hiddens[0], dtype="float32")
    elif hiddens:
        hidden = xp.concatenate([xp.asarray(h, dtype="float32") for h in hiddens])
    else:
        hidden = numpy.zeros((0, width), dtype="float32")
    return _Features(
        hidden=hidden,
        row_offsets=row_offsets,
        align_rows=_cat(align_rows),
        align_tokens=_cat(align_tokens),
        cls_rows=_cat(cls_rows),
        token_windows=_cat(token_windows),
        all_covered=all_covered,
    )


def _warn_if_truncated(doc: Doc, lengths: numpy.ndarray) -> None:
    """Warn when tokens other than whitespace got no wordpiece: the
    transformer cut a window that was longer than its maximum length in
    wordpieces, and nothing in the cut part can be found. Called for docs
    where some token got none."""
    lost = numpy.flatnonzero((lengths == 0) & ~whitespace_mask(doc))
    if len(lost):
        warnings.warn(
            f"[spacy-spert] {len(lost)} of {len(doc)} tokens of a doc got no wordpiece "
            f"(first: token {lost[0]}, {doc[int(lost[0])].text!r}): a transformer window held more wordpieces "
            f"than the encoder's maximum length, the transformer truncated it, and no entity can be found in "
            f"the cut tokens. Windows bounded in tokens alone overflow when tokens split into many wordpieces "
            f"(URLs, identifiers, long names) or a doc is one window; bound them in wordpieces too: "
            f"[components.transformer.model.get_spans] @span_getters = \"spacy-spert.sentence_windows.v2\".",
            stacklevel=2,
        )


def _cat(arrays: List[numpy.ndarray]) -> numpy.ndarray:
    if len(arrays) == 1:
        return arrays[0]
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


