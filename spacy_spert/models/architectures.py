"""The SpERT model as a thinc model: the transformer listener and the PyTorch head.

``build_spert_model`` (registered as ``spacy-spert.SpERT.v1``; SpERT.MT is
``build_spert_mt_model``, ``spacy-spert.SpERTMT.v1``) chains a transformer
listener (``tok2vec``: one ``TransformerData`` per doc with the wordpiece
vectors, the token-to-wordpiece alignment and [CLS]) with ``SpERTHead``
(``pytorch/head.py``: pooling and the entity and relation classifiers),
built at ``initialize`` once the hidden width and label counts are known. The
sublayers are found by name: ``model.get_ref("tok2vec")``,
``model.get_ref("head")`` (thinc's ``PyTorchWrapper_v2`` around the torch
module, which ``head_module`` returns).

The model's input and output:

* training (``begin_update``): ``(docs, TrainingBatch)`` -> ``SpERTLogits``,
  the logits of the sampled spans and pairs, for the objective's loss;
* inference (``predict``): ``(docs, Candidates, thresholds)`` ->
  ``SpERTPredictions``, the candidates classified as entities and the
  relations among them, decoded by the objective with the thresholds: the
  component's ``threshold`` setting as a float, or a ``Thresholds`` that adds
  its per-label ``entity_thresholds`` and ``relation_thresholds``.

The listener rule of spacy-transformers is kept: the tok2vec layer is called
once on the full list of docs, and backprop always runs (with zeros when there
is nothing to learn).
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union, cast

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict, registry
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchGradScaler,
    PyTorchWrapper_v2,
    get_torch_default_device,
    torch2xp,
    xp2torch,
)
from thinc.types import Floats2d

from . import tuning
from .listeners import check_context, with_max_context
from .objectives import SpERTMTObjective, SpERTObjective
from .pytorch.head import SpERTHead
from .pytorch.inference import HeadPredictions
from .sampling import TrainingBatch
from .suggesters import Candidates
from .wordpieces import split_gradients, wordpiece_features

_MT = SpERTMTObjective()  # the defaults of SpERT.MT's settings


@dataclass
class SpERTLogits:
    """What the model returns in training, and the gradient it takes back.

    entity_logits: (S, n_entity_outputs), one row per sampled span.
    relation_logits: (P, n_relation_outputs), one row per sampled pair.
    """

    entity_logits: Floats2d
    relation_logits: Floats2d


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


@dataclass(frozen=True)
class Thresholds:
    """The decision thresholds of inference with per-label values: the
    model's third inference input where the component has per-label
    thresholds (else the global threshold, a float, is the input). Scores are
    never changed: thresholds only decide what is kept.

    threshold (float): The global threshold (the component's ``threshold``):
        the objective's decoding rule (SpERT.MT: theta on the raw class
        scores of entities and relations) and the relation threshold of the
        labels without their own.
    entities (Optional[numpy.ndarray]): (E,) one threshold per entity label,
        or None (the objective's rule alone). A span whose decoded label's
        score is below its label's threshold is no entity (so it is not
        paired either).
    relations (Optional[numpy.ndarray]): (R,) one threshold per relation
        label, or None (``threshold`` for all).
    """

    threshold: float
    entities: Optional[numpy.ndarray] = None
    relations: Optional[numpy.ndarray] = None


@registry.layers("spacy-spert.WordpieceListener.v1")
def build_wordpiece_listener(upstream: str = "*", context: str = "cls") -> Model[List[Doc], List[TransformerData]]:
    """A listener that receives the upstream ``transformer`` component's output
    for each doc: wordpiece vectors, alignment and [CLS] (unlike
    ``spacy-transformers.TransformerListener.v1``, which pools to tokens).

    upstream (str): The name of the transformer component, or "*" for any.
    context (str): The context vector of a span's window: "cls" (SpERT's) or
        "max", the max over the window's wordpieces (``listeners.py``).
    RETURNS (Model[List[Doc], List[TransformerData]]): The listener.
    """
    check_context(context)
    listener = TransformerListener(upstream_name=upstream)
    return with_max_context(listener) if context == "max" else listener


@registry.architectures("spacy-spert.SpERT.v1")
def build_spert_model(
    tok2vec: Model[List[Doc], List[TransformerData]],
    width_embedding_size: int = 25,
    max_width_embeddings: int = 100,
    dropout: float = 0.1,
    pair_batch_size: int = 4096,
    max_pair_entities_per_token: float = 0.5,
    mixed_precision: bool = False,
    grad_scaler_config: Dict[str, Any] = SimpleFrozenDict(),
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
    mixed_precision (bool): The head's linear maps in torch's autocast, in
        training and at inference: float16 on CUDA, bfloat16 on the CPU (the
        pooling stays float32, and the logits are float32 before any softmax,
        sigmoid, loss or threshold). The transformer has its own switch
        (``transformer_model.v3``'s ``mixed_precision``).
    grad_scaler_config (Dict[str, Any]): The settings of thinc's
        ``PyTorchGradScaler`` for the head's training (``init_scale``,
        ``growth_interval`` ...), as the transformer's ``grad_scaler_config``;
        ``enabled`` defaults to mixed_precision on CUDA (float16 needs it;
        bfloat16 on the CPU does not, and thinc's scaler works on CUDA only).
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
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
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
    mixed_precision: bool = False,
    grad_scaler_config: Dict[str, Any] = SimpleFrozenDict(),
) -> Model:
    """SpERT.MT (Xue & Lu 2023) as a thinc model: SpERT's encoder, spans and
    localized context, with an identification head (one logit) and a bias-free
    class-score head (score_c = s . W_c) per stage. The loss settings (alpha
    ... iou_loss) are those of ``SpERTMTObjective`` (objectives.py), which
    documents them and holds their defaults (the paper's). Use the component's
    ``threshold`` (theta, 0.85 in the paper) on the raw class scores, and 120
    negative entities and relations per sentence.

    tok2vec, width_embedding_size, max_width_embeddings, dropout,
        pair_batch_size, max_pair_entities_per_token, mixed_precision,
        grad_scaler_config: as in ``SpERT.v1``.
    alpha, beta, m_plus, m_minus, gamma, delta, multitask, iou_loss: see
        ``SpERTMTObjective``; multitask = false is the ablation "-MTL",
        iou_loss = false "-EIL".
    entity_logits_in_relation (bool): False: the ablation "-Entity Logits",
        the relation input lacks both spans' entity logits.
    RETURNS (Model): The model (see ``build_spert_model``).
    """
    objective = SpERTMTObjective(
        alpha=alpha,
        beta=beta,
        m_plus=m_plus,
        m_minus=m_minus,
        gamma=gamma,
        delta=delta,
        multitask=multitask,
        iou_loss=iou_loss,
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
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
    )


def _build_model(tok2vec: Model, objective, grad_scaler_config: Dict[str, Any], **head_config) -> Model:
    """The thinc model shared by the architectures: ``objective``,
    ``head_config`` (the ``SpERTHead`` arguments) and the grad scaler's
    settings are kept in its attrs; the head is built at ``initialize`` (see
    ``build_head``)."""
    return Model(
        "spert",
        forward,
        init=init,
        layers=[tok2vec],
        refs={"tok2vec": tok2vec, "head": None},
        dims={"nI": None, "nE": None, "nR": None},
        attrs={"objective": objective, "head_config": head_config, "grad_scaler_config": dict(grad_scaler_config)},
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
    module = SpERTHead(
        hidden_width=model.get_dim("nI"),
        n_entity_outputs=objective.n_entity_outputs(model.get_dim("nE")),
        n_relation_outputs=objective.n_relation_outputs(model.get_dim("nR")),
        **model.attrs["head_config"],
    )
    head = PyTorchWrapper_v2(
        module,
        convert_inputs=convert_head_inputs,
        convert_outputs=convert_head_outputs,
        grad_scaler=head_grad_scaler(module.mixed_precision, model.attrs.get("grad_scaler_config", {})),
    )
    # The module itself, for inference (``head_module``). thinc skips it when
    # it serializes attrs (the weights are the shim's to save and load).
    head.attrs["module"] = module
    model.layers.append(head)
    model.set_ref("head", head)


def head_grad_scaler(mixed_precision: bool, config: Dict[str, Any]) -> PyTorchGradScaler:
    """The gradient scaler of the head's training, as spacy-transformers
    makes the transformer's: the shim scales the logits' gradient before
    torch's backward pass, unscales the weights' and the input's gradients
    after it and skips the step when one overflowed. (The module runs its
    own autocast, so the shim's ``mixed_precision`` stays off: thinc's
    covers CUDA only.)

    mixed_precision (bool): The head's setting.
    config (Dict[str, Any]): ``PyTorchGradScaler``'s settings; ``enabled``
        defaults to mixed_precision on CUDA (the device the head is built
        on: bfloat16 on the CPU needs no scaling).
    RETURNS (PyTorchGradScaler): The scaler.
    """
    config = dict(config)
    config.setdefault("enabled", mixed_precision and get_torch_default_device().type == "cuda")
    return PyTorchGradScaler(**config)


def head_module(model: Model) -> SpERTHead:
    """RETURNS (SpERTHead): The torch module of the model's head (built)."""
    return model.get_ref("head").attrs["module"]


def convert_head_inputs(head: Model, inputs: Tuple[Any, Dict[str, Any]], is_train: bool):
    """``PyTorchWrapper_v2``'s input conversion of the head in training (see
    ``SpERTHead.forward``): the wordpiece vectors become a tensor that takes
    a gradient, the index arrays tensors on the head's device.

    inputs (Tuple[Any, Dict[str, Any]]): The (R, H) wordpiece vectors (numpy
        or cupy) and the keyword arguments of ``SpERTHead.forward`` (numpy
        arrays and ints).
    RETURNS (Tuple[ArgsKwargs, Callable]): The module's arguments, and the
        callback that turns their gradient into the vectors' (None if none
        reached them).
    """
    hidden, kwargs = inputs
    device = head.attrs["module"].device
    args = ArgsKwargs(
        args=(xp2torch(hidden, requires_grad=is_train, device=device),),
        kwargs={
            name: torch.as_tensor(value, device=device) if isinstance(value, numpy.ndarray) else value
            for name, value in kwargs.items()
        },
    )

    def backprop(d_args: ArgsKwargs):
        d_hidden = d_args.args[0]
        return None if d_hidden is None else torch2xp(d_hidden)

    return args, backprop


def convert_head_outputs(head: Model, inputs_outputs: Tuple[Any, Tuple[torch.Tensor, torch.Tensor]], is_train: bool):
    """``PyTorchWrapper_v2``'s output conversion of the head in training: the
    entity and relation logits become ``SpERTLogits`` arrays.

    RETURNS (Tuple[SpERTLogits, Callable]): The logits, and the callback that
        turns their gradient into the arguments of torch's backward pass
        (only for logits that exist and take a gradient).
    """
    _, (ent_logits, rel_logits) = inputs_outputs
    output = SpERTLogits(cast(Floats2d, torch2xp(ent_logits.detach())), cast(Floats2d, torch2xp(rel_logits.detach())))

    def backprop(d_output: SpERTLogits) -> ArgsKwargs:
        pairs = [(ent_logits, d_output.entity_logits), (rel_logits, d_output.relation_logits)]
        grads = [(y, xp2torch(dy, device=y.device)) for y, dy in pairs if y.numel() and y.requires_grad]
        return ArgsKwargs(args=([y for y, _ in grads],), kwargs={"grad_tensors": [dy for _, dy in grads]})

    return output, backprop


def forward(model: Model, inputs: tuple, is_train: bool):
    """Training: ``(docs, TrainingBatch)`` -> ``SpERTLogits``, with a backprop
    callback that takes the logits' gradient. Inference: ``(docs,
    Candidates, thresholds)`` -> ``SpERTPredictions``, ``thresholds`` a float
    (the global threshold) or a ``Thresholds``."""
    if is_train:
        docs, batch = inputs
        return _forward_train(model, docs, batch)
    docs, candidates, thresholds = inputs
    return _forward_predict(model, docs, candidates, thresholds), _no_backprop


def _forward_predict(
    model: Model, docs: List[Doc], candidates: Candidates, thresholds: Union[float, Thresholds]
) -> SpERTPredictions:
    """Inference: the candidates classified and decoded with the thresholds."""
    entity_cut = relation_cut = None
    if isinstance(thresholds, Thresholds):
        threshold = decode_threshold = float(thresholds.threshold)
        relation_cut = thresholds.relations
        if thresholds.entities is not None and not candidates.given_entities:
            # One threshold per label id (0: none, never cut). The objective
            # decodes with the lowest threshold (SpERT.MT applies it, and a
            # label's own may be below the global one); each label's own
            # threshold then cuts its spans.
            entity_cut = numpy.concatenate(([-numpy.inf], thresholds.entities))
            decode_threshold = float(thresholds.entities.min(initial=threshold))
    else:
        threshold = decode_threshold = float(thresholds)
    trf_datas, _ = model.get_ref("tok2vec")(docs, False)
    feats = wordpiece_features(docs, trf_datas, model.get_dim("nI"))
    module = head_module(model)
    device = module.device
    if isinstance(feats.hidden, numpy.ndarray) and device.type == "cpu":
        hidden = torch.from_numpy(feats.hidden)  # what xp2torch does, without its checks
    else:
        hidden = xp2torch(model.ops.asarray(cast(Floats2d, feats.hidden)), device=device)
    objective = model.attrs["objective"]
    output = _predict_head(
        module,
        hidden,
        align_rows=feats.align_rows,
        align_tokens=feats.align_tokens,
        cls_rows=feats.cls_rows,
        token_windows=feats.token_windows,
        n_tokens=int(candidates.doc_offsets[-1]),
        max_range=candidates.max_range(),
        span_starts=candidates.starts,
        span_ends=candidates.ends,
        span_groups=candidates.groups,
        blocks=candidates.blocks(tuning.INFERENCE_BLOCK_TOKENS),
        objective=objective,
        threshold=decode_threshold,
        entity_thresholds=entity_cut,
        given_entities=candidates.given_entities,
        all_covered=feats.all_covered,
    )
    return _decode(objective, threshold, output, given_entities=candidates.given_entities, relation_cut=relation_cut)


def _forward_train(model: Model, docs: List[Doc], batch: TrainingBatch) -> Tuple[SpERTLogits, Callable]:
    """Training: the logits of the sampled spans and pairs, and the backprop
    callback (through the head's wrapper and the transformer listener)."""
    trf_datas, backprop_tok2vec = model.get_ref("tok2vec")(docs, True)
    feats = wordpiece_features(docs, trf_datas, model.get_dim("nI"))
    head_inputs = {
        "align_rows": numpy.asarray(feats.align_rows),
        "align_tokens": numpy.asarray(feats.align_tokens),
        "token_cls_rows": numpy.asarray(feats.token_cls_rows),
        "n_tokens": int(batch.doc_offsets[-1]),
        "max_range": batch.max_range(),
        "span_starts": numpy.asarray(batch.starts),
        "span_ends": numpy.asarray(batch.ends),
        "pair_heads": numpy.asarray(batch.pair_heads),
        "pair_tails": numpy.asarray(batch.pair_tails),
    }
    output, backprop_head = model.get_ref("head")((model.ops.asarray(cast(Floats2d, feats.hidden)), head_inputs), True)

    def backprop(d_output: SpERTLogits) -> List[Doc]:
        d_hidden = backprop_head(d_output)
        d_hidden = model.ops.alloc2f(*feats.hidden.shape) if d_hidden is None else model.ops.asarray(d_hidden)
        return backprop_tok2vec(split_gradients(trf_datas, d_hidden, feats.row_offsets))

    return output, backprop


def _predict_head(module: SpERTHead, hidden: torch.Tensor, **kwargs) -> HeadPredictions:
    """Run ``SpERTHead.predict`` without autograd. (Its computation uses no
    dropout, so the module needs no switch to eval mode and back, which
    visits every submodule twice per batch: the reason inference calls the
    module, not the wrapper, whose shim makes that switch.)"""
    with torch.inference_mode():
        return module.predict(hidden, **kwargs)


def _decode(
    objective,
    threshold: float,
    output: HeadPredictions,
    given_entities: bool = False,
    relation_cut: Optional[numpy.ndarray] = None,
) -> SpERTPredictions:
    """Turn the head's inference output into entities and relations with the
    objective's decoding rule (``objectives.py``): a span is an entity when its
    decoded label is not "none" (every span, with ``given_entities``, whose
    labels are then not the model's to decide); a pair holds each relation
    type whose score is >= threshold, or >= its type's value in
    ``relation_cut`` (R,) where given."""
    labels = output.entity_labels
    rel_scores = objective.decode_relations(output.relation_logits.cpu().numpy(), threshold)
    if given_entities:
        kept = numpy.arange(labels.shape[0])
        labels = numpy.maximum(labels, 1)
    else:
        kept = (labels > 0).nonzero()[0]  # (the methods: numpy's functions add a Python call each)
    # one comparison of the (P, R) scores with a scalar or the (R,) row, in
    # the scores' precision (as numpy compares with a Python float)
    cut = threshold if relation_cut is None else relation_cut.astype(rel_scores.dtype, copy=False)
    hit_pairs, hit_types = (rel_scores >= cut).nonzero()
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
