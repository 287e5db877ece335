"""spert after spaCy's curated transformers (spacy-curated-transformers 0.3,
the release for spaCy 3.8: ``pip install spacy-spert[curated]``).

A ``curated_transformer`` component gives, per doc, a ``Ragged`` of piece
vectors grouped by token (``lengths``: pieces per token, 0 for whitespace
tokens); it removes the BOS/EOS pieces, so there is no [CLS] vector. The
listener here, ``spacy-spert.CuratedTransformerListener.v1``, turns that
into what spert's head reads from spacy-transformers (``TransformerData``:
windows of ``last_hidden_state``, the token-to-row alignment, a context vector
in each window's first row), so the model is the same for both:

* windows: each sentence (``context_window="sentence"``; the doc when it has
  no sentence boundaries) or the doc, cut into consecutive pieces of at most
  ``max_context_tokens`` tokens; window w holds its pieces in rows 1.. of
  ``last_hidden_state[w]`` (then zero padding);
* the context vector (row 0 of each window): the max over the window's piece
  vectors (``context="max"``), the stand-in for [CLS];
* the alignment is curated's own (pieces are grouped by token there), so it
  is exact by construction.

In training, the gradient of those rows goes back to curated's per-token
``Ragged`` (the context row's through the max, to the pieces that held each
maximum) and to the upstream component through its listener protocol.
"""

from typing import Any, Callable, List, Optional, Tuple, cast

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import TransformerData
from thinc.api import Model, get_array_module, to_numpy
from thinc.types import Floats2d, Ragged
from transformers.file_utils import ModelOutput

from .listeners import CURATED, LISTENER_KIND, backprop_window_max, check_context, window_max
from .suggesters import scope_ids

CONTEXT_WINDOWS = ("sentence", "doc")
NO_CLS = ": curated transformers remove the [CLS] piece from their output"


def _curated():
    """The spacy-curated-transformers listener helpers, or a clear error."""
    try:
        from spacy_curated_transformers.models.listeners import ListenerStateUtils
        from spacy_curated_transformers.models.output import DocTransformerOutput
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "spacy-spert.CuratedTransformerListener.v1 needs spacy-curated-transformers 0.3 "
            '(the release for spaCy 3.8): pip install "spacy-spert[curated]"'
        ) from err
    return ListenerStateUtils, DocTransformerOutput


# Registered as an architecture too: spacy-curated-transformers'
# nlp.replace_listeners callback reads the listener's "@architectures" name.
@registry.architectures("spacy-spert.CuratedTransformerListener.v1")
@registry.layers("spacy-spert.CuratedTransformerListener.v1")
def build_curated_transformer_listener(
    width: Optional[int] = None,
    upstream: str = "*",
    context: str = "max",
    context_window: str = "sentence",
    max_context_tokens: int = 128,
) -> Model[List[Doc], List[TransformerData]]:
    """A listener of a ``curated_transformer`` component (spacy-curated-
    transformers 0.3) that gives spert's head the piece vectors, their tokens
    and a context vector per window (see the module docstring).

    width (Optional[int]): The transformer's hidden width; null: read from the
        upstream component when spert is initialized (``nlp.replace_listeners``
        needs it given: the copy of the transformer is built with it).
    upstream (str): The name of the curated_transformer component, or "*".
    context (str): The context vector: "max", the max over the window's piece
        vectors (the only choice: the output has no [CLS]).
    context_window (str): The window the context vector covers: "sentence"
        (the doc when it has no sentence boundaries) or "doc".
    max_context_tokens (int): Longer sentences (docs) are cut into
        consecutive windows of at most this many tokens (0: no limit).
    RETURNS (Model[List[Doc], List[TransformerData]]): The listener.
    """
    list_state, _ = _curated()
    check_context(context, ("max",), NO_CLS)
    if context_window not in CONTEXT_WINDOWS:
        raise ValueError(f"Unknown context_window '{context_window}': use 'sentence' or 'doc'.")
    if max_context_tokens < 0:
        raise ValueError(f"max_context_tokens must be >= 0 (0: no limit), not {max_context_tokens}")
    model: Model = Model(
        "spert-curated-listener",
        _forward,
        dims={"nO": width},
        attrs={
            LISTENER_KIND: CURATED,
            "context": context,
            "context_window": context_window,
            "max_context_tokens": max_context_tokens,
        },
    )
    list_state.init_state(model, upstream_name=upstream, requires_all_layer_outputs=False)
    return model


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[TransformerData], Callable]:
    list_state, _ = _curated()
    docs = list(docs)
    outputs = list_state.get_output(model)
    upstream_backprop = list_state.get_backprop(model)
    if outputs is None or (not is_train and list_state.use_doc_annotations_for_prediction(model)):
        # Inference, or training with the curated transformer frozen (in
        # [training] frozen_components and annotating_components): its
        # output is on the docs, and no gradient goes back to it.
        layers = [_doc_layer(doc, model, is_train) for doc in docs]
        upstream_backprop = None
    else:
        list_state.verify_inputs(model, docs)
        layers = list(outputs.last_hidden_layer_states)
        if not is_train:  # a listener wrapped by nlp.replace_listeners
            list_state.clear_state(model)
            upstream_backprop = None
    width = model.get_dim("nO") if model.has_dim("nO") else None
    trf_datas, routes = [], []
    for doc, layer in zip(docs, layers):
        trf, route = curated_to_trf_data(doc, layer, width, model.attrs)
        trf_datas.append(trf)
        routes.append(route)

    def backprop(d_trf_datas: List[TransformerData]) -> Any:
        if upstream_backprop is None:
            return []
        try:
            if _is_frozen(upstream_backprop):
                return []
            d_layers = [piece_gradient(d_trf, layer, route) for d_trf, layer, route in zip(d_trf_datas, layers, routes)]
            return _send_upstream(upstream_backprop, d_layers)
        finally:
            list_state.clear_state(model)

    return trf_datas, backprop


def _is_frozen(upstream_backprop: Callable) -> bool:
    """Whether the callback is the one a frozen curated_transformer
    (``frozen = true``) gives its last listener: the no-op of its
    ``_create_backprops``, which only sums a loss for the log. spert skips
    it, because spacy-curated-transformers 0.3.x converts that sum with
    float() on a one-element array, which numpy >= 2.4 refuses."""
    return getattr(upstream_backprop, "__name__", "") == "backprop_noop"


def _send_upstream(upstream_backprop: Callable, d_layers: List[Ragged]) -> Any:
    """Give the gradient of the last layer to the curated_transformer. Its
    training code runs the float() that numpy >= 2.4 refuses (``_is_frozen``),
    so fine-tuning fails there: the error says what to do."""
    try:
        # (-1,): the gradient is for the last layer's output, as curated's
        # LastTransformerLayerListener sends it.
        return upstream_backprop([[d] for d in d_layers], outputs_to_backprop=(-1,))
    except TypeError as err:
        if "0-dimensional" not in str(err):
            raise
        raise RuntimeError(
            f"spacy-curated-transformers cannot fine-tune its transformer with numpy {numpy.__version__}: its "
            "0.3.x releases convert a one-element array with float(), which numpy >= 2.4 refuses. Install "
            'numpy < 2.4 (pip install "numpy<2.4"), give spert its own copy of the transformer with '
            'nlp.replace_listeners("curated_transformer", "spert", ["model.tok2vec"]), or train with the '
            "transformer frozen: [components.curated_transformer] frozen = true."
        ) from err


def _doc_layer(doc: Doc, model: Model, is_train: bool) -> Optional[Ragged]:
    """The last layer of a doc's ``doc._.trf_data`` (None if it has none)."""
    _, doc_output_type = _curated()
    trf = doc._.trf_data if Doc.has_extension("trf_data") else None
    if trf is None:
        if is_train and len(doc):
            raise ValueError(
                "spacy-spert.CuratedTransformerListener.v1 got no transformer output in training: a frozen "
                "curated_transformer (in [training] frozen_components) must also be in "
                "[training] annotating_components, so that its output is on the docs."
            )
        return None
    if not isinstance(trf, doc_output_type):
        raise ValueError(
            f"spacy-spert.CuratedTransformerListener.v1 reads a curated_transformer's output, but doc._.trf_data "
            f"holds a {type(trf).__name__} (a spacy-transformers 'transformer' component's): use "
            "spacy-spert.WordpieceListener.v1 after a 'transformer'."
        )
    return trf.last_hidden_layer_state


class _Route:
    """Where the rows of a converted doc came from: piece i of the doc is row
    ``piece_rows[i]`` of the flat ``last_hidden_state``; ``which`` holds the
    pieces that gave each window's max (``window_max``)."""

    def __init__(self, shape: Tuple[int, int, int], piece_rows: numpy.ndarray, which: List[Any]):
        self.shape = shape
        self.piece_rows = piece_rows
        self.which = which


def context_windows(doc: Doc, context_window: str, max_tokens: int) -> List[Tuple[int, int]]:
    """The token ranges of a doc's context windows.

    doc (Doc): The doc.
    context_window (str): "sentence" (the doc without sentence boundaries) or "doc".
    max_tokens (int): Longer units are cut into consecutive ranges of this many (0: never).
    RETURNS (List[Tuple[int, int]]): (start, end) per window, covering the doc in order.
    """
    n = len(doc)
    if not n:
        return []
    sents = scope_ids(doc, "sentence") if context_window == "sentence" else None
    if sents is None:
        units = [(0, n)]
    else:
        starts = numpy.flatnonzero(numpy.diff(sents, prepend=-1)).tolist()
        units = list(zip(starts, starts[1:] + [n]))
    if max_tokens <= 0:
        return units
    return [(s, min(s + max_tokens, e)) for start, e in units for s in range(start, e, max_tokens)]


def curated_to_trf_data(
    doc: Doc, layer: Optional[Ragged], width: Optional[int], settings: dict
) -> Tuple[TransformerData, Optional[_Route]]:
    """One doc's curated output as spacy-transformers' ``TransformerData``
    (windows of rows: row 0 the window's context vector, then its pieces).

    doc (Doc): The doc.
    layer (Optional[Ragged]): Its last layer from curated (pieces grouped by
        token); None: no output (an empty doc, or a doc the transformer did not see).
    width (Optional[int]): The hidden width (for docs without output).
    settings (dict): The listener's attrs (context_window, max_context_tokens).
    RETURNS (Tuple[TransformerData, Optional[_Route]]): The converted output,
        and what its gradient needs (None without output).
    """
    n = len(doc)
    lengths = to_numpy(layer.lengths).astype("int64") if layer is not None else numpy.zeros((n,), "int64")
    if layer is None or not n or layer.dataXd.shape[0] == 0:
        empty = numpy.zeros((0, 0, width or 0), dtype="float32")
        align = _ragged(numpy.zeros((0,), dtype="int32"), numpy.zeros((n,), dtype="int32"))
        return _trf_data(empty, align), None
    if len(lengths) != n:
        raise ValueError(
            f"The curated transformer's output has {len(lengths)} tokens for a doc of {n}: the docs changed "
            "between the transformer and spert."
        )
    pieces = cast(Floats2d, layer.dataXd)
    xp = get_array_module(pieces)
    windows = context_windows(doc, settings["context_window"], settings["max_context_tokens"])
    piece_starts = numpy.concatenate(([0], numpy.cumsum(lengths)))
    win_pieces = [(int(piece_starts[s]), int(piece_starts[e])) for s, e in windows]
    seq_len = 1 + max(e - s for s, e in win_pieces)
    piece_rows = numpy.empty((int(piece_starts[-1]),), dtype="int64")
    for w, (s, e) in enumerate(win_pieces):
        piece_rows[s:e] = w * seq_len + 1 + numpy.arange(e - s)
    hidden_width = pieces.shape[1]
    flat = xp.zeros((len(windows) * seq_len, hidden_width), dtype=pieces.dtype)
    flat[xp.asarray(piece_rows)] = pieces
    context, which = window_max(pieces, [numpy.arange(s, e) for s, e in win_pieces])
    flat[::seq_len] = context
    shape = (len(windows), seq_len, hidden_width)
    align = _ragged(piece_rows.astype("int32"), lengths.astype("int32"))
    return _trf_data(flat.reshape(shape), align), _Route(shape, piece_rows, which)


def _ragged(data, lengths) -> Ragged:
    return Ragged(cast(Any, data), cast(Any, lengths))


def _trf_data(last_hidden_state, align: Ragged) -> TransformerData:
    """A ``TransformerData`` with only what spert reads (no wordpiece strings:
    curated keeps its piece ids inside its model)."""
    return TransformerData(
        wordpieces=cast(Any, None), model_output=ModelOutput(last_hidden_state=last_hidden_state), align=align
    )


def piece_gradient(d_trf: TransformerData, layer: Optional[Ragged], route: Optional[_Route]) -> Ragged:
    """The gradient of a converted doc as curated's per-token ``Ragged``: each
    piece's row, plus the context row's gradient on the pieces that gave its max.

    d_trf (TransformerData): The gradient of ``curated_to_trf_data``'s output.
    layer (Optional[Ragged]): The doc's curated output (its shape and lengths).
    route (Optional[_Route]): ``curated_to_trf_data``'s second output.
    RETURNS (Ragged): The gradient of ``layer``.
    """
    if layer is None:
        return _ragged(numpy.zeros((0, 0), dtype="float32"), numpy.zeros((0,), dtype="int32"))
    xp = get_array_module(layer.dataXd)
    if route is None:
        return _ragged(xp.zeros(layer.dataXd.shape, dtype="float32"), layer.lengths)
    d_flat = d_trf.model_output["last_hidden_state"].reshape(-1, route.shape[2])
    d_pieces = d_flat[xp.asarray(route.piece_rows)].astype("float32")
    backprop_window_max(d_pieces, d_flat[:: route.shape[1]], route.which)
    return _ragged(d_pieces, layer.lengths)
