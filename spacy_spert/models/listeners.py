"""What spert's head reads from the transformer, and checks that the pipeline
gives it.

SpERT's context vector is the [CLS] vector of the transformer window that holds
a span (the first row of each window of ``last_hidden_state``). The listeners
can put something else in that row, so that the head is unchanged:

* ``context="cls"``: [CLS] itself (SpERT's; spacy-transformers only).
* ``context="max"``: the max over the window's wordpieces (the rows aligned to
  its tokens), written into the [CLS] row of a copy of the output. Encoders
  whose output has no [CLS] (spaCy's curated transformers remove it, see
  ``curated.py``) need it; with spacy-transformers it is an option.

``listener_width`` finds the hidden width for the head when spert is
initialized, and refuses a listener that does not fit the pipeline's
transformer with a message that names the mismatch.
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener
from thinc.api import Model, get_array_module
from transformers.file_utils import ModelOutput

# The listener kind spert's tok2vec layers declare in their attrs: which
# transformer component they read ("transformer" or "curated_transformer").
LISTENER_KIND = "spert_listener_kind"
SPACY_TRANSFORMERS = "transformer"
CURATED = "curated_transformer"
CONTEXTS = ("cls", "max")
DOCS_SECTION = 'docs/training-and-configs.md, "spaCy\'s curated transformers"'
LISTENER_FOR = {
    SPACY_TRANSFORMERS: "spacy-spert.WordpieceListener.v1",
    CURATED: "spacy-spert.CuratedTransformerListener.v1",
}


def check_context(context: str, allowed: Sequence[str] = CONTEXTS, why: str = "") -> None:
    """Refuse an unknown ``context`` setting.

    context (str): The setting.
    allowed (Sequence[str]): The values this listener takes.
    why (str): Why others are not allowed (added to the message).
    """
    if context not in allowed:
        raise ValueError(
            f"Unknown spert listener context '{context}': use {' or '.join(repr(c) for c in allowed)}{why}"
        )


def window_max(hidden, windows: List[numpy.ndarray]) -> Tuple[Any, List[Optional[numpy.ndarray]]]:
    """The max over the given rows of ``hidden``, per window, and where each
    maximum came from (for the gradient, ``backprop_window_max``).

    hidden (Floats2d): (R, H) vectors (numpy or cupy).
    windows (List[numpy.ndarray]): One array of row indices per window (may
        be empty: the window's vector is then zeros).
    RETURNS (Tuple[Floats2d, List[Optional[Ints1d]]]): (W, H) the maxima, and
        per window the (H,) row that holds each column's maximum (None for an
        empty window).
    """
    xp = get_array_module(hidden)
    out = xp.zeros((len(windows), hidden.shape[1]), dtype=hidden.dtype)
    which: List[Optional[numpy.ndarray]] = []
    for w, rows in enumerate(windows):
        if not len(rows):
            which.append(None)
            continue
        block = hidden[xp.asarray(rows)]
        arg = block.argmax(axis=0)
        out[w] = block[arg, xp.arange(hidden.shape[1])]
        which.append(xp.asarray(rows)[arg])
    return out, which


def backprop_window_max(d_hidden, d_max, which: List[Optional[numpy.ndarray]]) -> None:
    """Add the gradient of ``window_max``'s maxima to the rows they came from,
    in place (each column's gradient to its maximum's row).

    d_hidden (Floats2d): (R, H) the gradient of ``hidden``, updated.
    d_max (Floats2d): (W, H) the gradient of the maxima.
    which (List[Optional[Ints1d]]): ``window_max``'s second output.
    """
    xp = get_array_module(d_hidden)
    cols = xp.arange(d_hidden.shape[1])
    for w, rows in enumerate(which):
        if rows is not None:
            # one (row, column) pair per column: no index repeats in one add
            d_hidden[rows, cols] += d_max[w]


def trf_windows(trf: TransformerData) -> List[numpy.ndarray]:
    """The wordpiece rows of each window of a spacy-transformers output: the
    rows aligned to tokens (never [CLS], [SEP] or padding), by window.

    trf (TransformerData): One doc's output.
    RETURNS (List[numpy.ndarray]): Per window, its sorted row indices into
        ``last_hidden_state.reshape(-1, width)``.
    """
    lhs = trf.model_output["last_hidden_state"]
    seq_len = lhs.shape[1]
    rows = numpy.unique(numpy.asarray(trf.align.dataXd, dtype="int64").reshape(-1))
    bounds = numpy.searchsorted(rows, numpy.arange(lhs.shape[0] + 1) * seq_len)
    return [rows[bounds[w] : bounds[w + 1]] for w in range(lhs.shape[0])]


def with_max_context(listener: TransformerListener) -> Model[List[Doc], List[TransformerData]]:
    """Wrap a spacy-transformers listener so that each window's [CLS] row holds
    the max over the window's wordpieces instead (in a copy: the doc's
    ``trf_data`` is not changed). The [CLS] vector itself gets no gradient.

    listener (TransformerListener): The listener.
    RETURNS (Model[List[Doc], List[TransformerData]]): The wrapped listener.
    """
    return Model(
        "spert-max-context",
        _max_context_forward,
        layers=[listener],
        attrs={LISTENER_KIND: SPACY_TRANSFORMERS, "context": "max"},
    )


def _max_context_forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[TransformerData], Callable]:
    trf_datas, backprop_listener = model.layers[0](docs, is_train)
    outputs: List[TransformerData] = []
    routes: List[Optional[List[Optional[numpy.ndarray]]]] = []
    for trf in trf_datas:
        lhs = trf.model_output.get("last_hidden_state") if trf.model_output is not None else None
        if lhs is None or lhs.size == 0:
            outputs.append(trf)
            routes.append(None)
            continue
        seq_len = lhs.shape[1]
        flat = lhs.reshape(-1, lhs.shape[-1])
        context, which = window_max(flat, trf_windows(trf))
        new_flat = flat.copy()
        new_flat[::seq_len] = context
        outputs.append(_with_hidden(trf, new_flat.reshape(lhs.shape)))
        routes.append(which)

    def backprop(d_trf_datas: List[TransformerData]) -> Any:
        d_outputs = []
        for d_trf, which in zip(d_trf_datas, routes):
            if which is None:
                d_outputs.append(d_trf)
                continue
            d_lhs = d_trf.model_output["last_hidden_state"]
            seq_len = d_lhs.shape[1]
            d_flat = d_lhs.reshape(-1, d_lhs.shape[-1]).copy()
            d_context = d_flat[::seq_len].copy()
            d_flat[::seq_len] = 0.0  # the [CLS] vector was not used
            backprop_window_max(d_flat, d_context, which)
            d_outputs.append(_with_hidden(d_trf, d_flat.reshape(d_lhs.shape)))
        return backprop_listener(d_outputs)

    return outputs, backprop


def _with_hidden(trf: TransformerData, lhs) -> TransformerData:
    return TransformerData(wordpieces=trf.wordpieces, model_output=ModelOutput(last_hidden_state=lhs), align=trf.align)


# Checks at initialize ---------------------------------------------------------


def listener_kind(tok2vec: Model) -> Optional[str]:
    """Which transformer component spert's tok2vec layer reads.

    tok2vec (Model): The spert model's "tok2vec" sublayer.
    RETURNS (Optional[str]): "transformer" (spacy-transformers),
        "curated_transformer", or None: not a wordpiece listener of spert's.
    """
    kind = tok2vec.attrs.get(LISTENER_KIND)
    if kind is not None:
        return kind
    # a bare spacy-transformers listener (what WordpieceListener.v1 returns)
    return SPACY_TRANSFORMERS if isinstance(tok2vec, TransformerListener) else None


def _transformers(nlp: Any) -> List[Tuple[int, str, str]]:
    """(pipeline index, name, factory) of the pipeline's transformer components."""
    found = []
    for i, name in enumerate(nlp.component_names):
        factory = nlp.get_pipe_meta(name).factory
        if factory in (SPACY_TRANSFORMERS, CURATED):
            found.append((i, name, factory))
    return found


def _describe_tok2vec(tok2vec: Model) -> str:
    names = [node.name for node in tok2vec.walk()]
    if any("transformer-listener" in name for name in names):
        return (
            f"'{tok2vec.name}', a spacy-transformers listener that pools the wordpieces into one vector per token "
            "(spacy-transformers.TransformerListener.v1)"
        )
    if any(node.attrs.get("_TRANSFORMER_LISTENER") for node in tok2vec.walk()):
        return (
            f"'{tok2vec.name}', a spacy-curated-transformers listener that pools the pieces into one vector per "
            "token (e.g. spacy-curated-transformers.LastTransformerLayerListener.v1)"
        )
    return f"'{tok2vec.name}'"


def listener_width(tok2vec: Model, nlp: Any, component: str) -> int:
    """The transformer's hidden width for spert's head, after checking that
    spert's listener fits the pipeline's transformer component: the right
    listener for its kind (spacy-transformers ``transformer`` or
    ``curated_transformer``), listening to a component that exists and comes
    before spert.

    tok2vec (Model): The spert model's "tok2vec" sublayer.
    nlp (Optional[Language]): The pipeline (None: less specific messages).
    component (str): The spert component's name (for messages).
    RETURNS (int): The hidden width.
    RAISES: ValueError naming what does not fit.
    """
    prefix = f"The spert component '{component}'"
    kind = listener_kind(tok2vec)
    if kind is None:
        raise ValueError(
            f"{prefix} has the tok2vec layer {_describe_tok2vec(tok2vec)}; spert needs each transformer "
            f"wordpiece and its alignment: use {LISTENER_FOR[SPACY_TRANSFORMERS]} after a 'transformer' "
            f"component (spacy-transformers) or {LISTENER_FOR[CURATED]} after a 'curated_transformer' "
            f"({DOCS_SECTION})."
        )
    upstream_listener = _upstream_listener(tok2vec, kind)
    width = _known_width(upstream_listener)
    upstream = _upstream_name(upstream_listener, kind)
    if nlp is None:
        if width is None:
            raise ValueError(
                f"{prefix} could not find the width of its transformer: its listener "
                f"({LISTENER_FOR[kind]}) reads a '{kind}' component, initialize it in a pipeline that has one "
                "before it."
            )
        return width
    found = _transformers(nlp)
    own_index = nlp.component_names.index(component) if component in nlp.component_names else len(nlp.component_names)
    matching = [(i, name) for i, name, factory in found if factory == kind and upstream in ("*", name)]
    other = [(name, factory) for _, name, factory in found if factory != kind]
    if not matching:
        if other:
            name, factory = other[0]
            raise ValueError(
                f"{prefix} reads a '{kind}' component with {LISTENER_FOR[kind]}, but the pipeline's transformer "
                f"'{name}' is a '{factory}'"
                + (" (spacy-curated-transformers)" if factory == CURATED else " (spacy-transformers)")
                + f": use {LISTENER_FOR[factory]} as [components.{component}.model.tok2vec] ({DOCS_SECTION})."
            )
        same_kind = [name for _, name, factory in found if factory == kind]
        if same_kind:
            raise ValueError(
                f"{prefix} listens to the component '{upstream}', but the pipeline's '{kind}' is "
                f"{', '.join(repr(n) for n in same_kind)}: set [components.{component}.model.tok2vec] "
                f'upstream = "*" or its name.'
            )
        raise ValueError(
            f"{prefix} has no '{kind}' component to listen to: add a '{kind}' component before it in the "
            f"pipeline (its listener is {LISTENER_FOR[kind]}; the pipeline is {nlp.pipe_names})."
        )
    if all(i > own_index for i, _ in matching):
        raise ValueError(
            f"{prefix} comes before its transformer '{matching[0][1]}' in the pipeline {nlp.pipe_names}: "
            "put the transformer first."
        )
    if kind == CURATED:
        upstream_width = _curated_width(nlp, [name for i, name in matching if i < own_index], upstream_listener)
        if width is not None and upstream_width is not None and width != upstream_width:
            raise ValueError(
                f"{prefix} has a CuratedTransformerListener with width = {width}, but its transformer gives "
                f"vectors of width {upstream_width}: set width = {upstream_width} or null."
            )
        width = width if width is not None else upstream_width
    if width is None:
        raise ValueError(
            f"{prefix} could not find the width of its transformer '{matching[0][1]}': initialize the "
            "transformer before spert (nlp.initialize does, in pipeline order)."
        )
    if _known_width(upstream_listener) is None:
        upstream_listener.set_dim("nO", width)  # saved with the model: a loaded pipeline needs no upstream lookup
    return width


def _upstream_listener(tok2vec: Model, kind: str) -> Model:
    """The node of tok2vec that the transformer component talks to."""
    for node in tok2vec.walk():
        if kind == SPACY_TRANSFORMERS and isinstance(node, TransformerListener):
            return node
        if kind == CURATED and node.attrs.get("_TRANSFORMER_LISTENER"):
            return node
    return tok2vec


def _known_width(node: Model) -> Optional[int]:
    if node.has_dim("nO"):
        width = node.get_dim("nO")
        return int(width) if width else None
    return None


def _upstream_name(node: Model, kind: str) -> str:
    if kind == SPACY_TRANSFORMERS:
        return getattr(node, "upstream_name", "*")
    return node.attrs.get("_upstream_name", "*")


def _curated_width(nlp: Any, names: List[str], node: Model) -> Optional[int]:
    """The hidden width of the curated transformer that has ``node`` among its
    listeners (else of the first candidate)."""
    pipes = [nlp.get_pipe(name) for name in names]
    owners = [pipe for pipe in pipes if any(listener is node for listener in getattr(pipe, "listeners", []))]
    for pipe in owners or pipes:
        model = getattr(pipe, "model", None)
        if isinstance(model, Model) and model.has_dim("nO") and model.get_dim("nO"):
            return int(model.get_dim("nO"))
    return None
