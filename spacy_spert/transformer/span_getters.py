"""Span getters: the windows of a doc that the transformer encodes.

* ``spacy-spert.doc_spans.v1`` encodes each doc in one window, like
  ``spacy-transformers.doc_spans.v1``, but gives an empty doc no window (the
  spacy-transformers getter fails on empty docs, E1002). For sentence-level
  corpora only: a doc longer than the encoder's window does not fit.
* ``spacy-spert.sentence_windows.v1`` encodes each sentence in its own window
  (the whole doc when it has no sentence boundaries) and cuts a unit longer
  than ``max_tokens`` into overlapping windows of ``max_tokens`` tokens,
  ``stride`` tokens apart. Docs of any length fit; a one-sentence doc up to
  ``max_tokens`` tokens is one window, exactly as with ``doc_spans.v1``.
* ``spacy-spert.sentence_windows.v2`` makes v1's windows and also bounds them
  in wordpieces, counted with the pipeline's own tokenizer, so that text whose
  tokens split into many wordpieces (URLs, identifiers, chemical names) never
  makes a window that the transformer truncates (see ``WordpieceWindows``).
"""

import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.tokens import Doc, Span

# spacy-transformers adds registry.span_getters when it is imported, so the
# registry's type does not declare it (hence the ignores below).
from spacy_transformers.util import registry

from .alignment import encoder_max_length, install_aligned_forward, max_wordpieces


def get_doc_spans(docs: Iterable[Doc]) -> List[List[Span]]:
    """Map each doc to [doc[:]], or to [] when it is empty."""
    return [[doc[:]] if len(doc) else [] for doc in docs]


@registry.span_getters("spacy-spert.doc_spans.v1")  # type: ignore[attr-defined]
def configure_doc_spans() -> Callable[[Iterable[Doc]], List[List[Span]]]:
    """RETURNS: ``get_doc_spans`` (a module-level function, so pipelines pickle)."""
    return get_doc_spans


class SentenceWindows:
    """The span getter of ``spacy-spert.sentence_windows.v1`` (a class, so
    that pipelines using it pickle for ``nlp.pipe(n_process=...)``).

    max_tokens (int): The longest window, in tokens.
    stride (int): The distance between the starts of two windows of one long
        sentence (<= max_tokens; max_tokens - stride tokens overlap).
    """

    def __init__(self, max_tokens: int, stride: int):
        if max_tokens < 1 or not 1 <= stride <= max_tokens:
            raise ValueError(
                f"sentence_windows needs max_tokens >= 1 and 1 <= stride <= max_tokens, "
                f"not max_tokens={max_tokens}, stride={stride}"
            )
        self.max_tokens = max_tokens
        self.stride = stride

    def __call__(self, docs: Iterable[Doc]) -> List[List[Span]]:
        """RETURNS (List[List[Span]]): the windows of each doc, in order."""
        return [self.doc_windows(doc) for doc in docs]

    def doc_windows(self, doc: Doc) -> List[Span]:
        if not len(doc):
            return []
        windows = []
        for start, end in self._units(doc):
            windows.append(doc[start : min(end, start + self.max_tokens)])
            last = start
            while last + self.max_tokens < end:
                last += self.stride
                windows.append(doc[last : min(end, last + self.max_tokens)])
        return windows

    @staticmethod
    def _units(doc: Doc) -> List[Tuple[int, int]]:
        """(start, end) of each sentence, or of the whole doc without sentence boundaries."""
        if doc.has_annotation("SENT_START") or doc.has_annotation("DEP"):
            return [(sent.start, sent.end) for sent in doc.sents]
        return [(0, len(doc))]


@registry.span_getters("spacy-spert.sentence_windows.v1")  # type: ignore[attr-defined]
def configure_sentence_windows(max_tokens: int = 128, stride: int = 96) -> Callable[[Iterable[Doc]], List[List[Span]]]:
    """Sentence windows, long sentences cut into strided windows.

    max_tokens (int): The longest window, in tokens (128: about 200
        wordpieces of English with a BERT vocabulary, well within 512).
    stride (int): Start-to-start distance of the windows of a long sentence.
    RETURNS: A span getter for the ``transformer`` component.
    """
    return SentenceWindows(max_tokens, stride)


class WordpieceWindows(SentenceWindows):
    """The span getter of ``spacy-spert.sentence_windows.v2``: the windows of
    ``sentence_windows.v1``, also bounded in wordpieces.

    A window ends at the first token that would take it past
    ``max_tokens`` tokens or past the encoder's maximum length in wordpieces
    ([CLS] and [SEP] included), counted with the pipeline's own tokenizer;
    the next window of a long unit starts ``stride`` tokens later, or
    proportionally fewer after a window that wordpieces cut short
    (``stride x length // max_tokens``, at least 1), and never so few that
    the next window ends where this one does, so consecutive windows overlap
    as in v1 and every token is in one. Where no window is cut by
    wordpieces, the windows are exactly v1's. A single token with more
    wordpieces than a whole window is encoded alone in its own window; the
    transformer keeps only its first wordpieces, and a warning names the token.

    The tokenizer is the transformer model's (``TransformerModel.tokenizer``);
    the getter learns which model is its own through :meth:`bind`, which the
    ``spert`` component calls for every transformer of its pipeline
    (:func:`bind_wordpiece_windows`). Unbound, or before the transformer is
    loaded, windows are bounded in tokens only, as v1's.

    max_tokens (int), stride (int): As for ``SentenceWindows``.
    max_wordpieces (Optional[int]): The longest window in wordpieces, special
        tokens included; None: the smaller of the tokenizer's
        ``model_max_length`` and the encoder's own maximum (512 for BERT and
        RoBERTa, 8,192 for ModernBERT; see ``alignment.max_wordpieces``). A
        larger value is capped at it.
    """

    # Token strings whose wordpiece counts are cached; the cache is emptied
    # when it holds more, so a long-running service does not grow without bound.
    CACHE_SIZE = 1 << 17

    def __init__(self, max_tokens: int, stride: int, max_wordpieces: Optional[int] = None):
        super().__init__(max_tokens, stride)
        if max_wordpieces is not None and max_wordpieces < 1:
            raise ValueError(f"sentence_windows.v2 needs max_wordpieces >= 1 or null, not {max_wordpieces}")
        self.max_wordpieces = max_wordpieces
        self._model = None
        self._tokenizer = None
        self._counts: Dict[str, int] = {}

    def bind(self, model: Any) -> None:
        """Count wordpieces with the tokenizer of ``model``, the transformer
        model (``spacy-transformers`` ``TransformerModel``) that calls this
        getter. Its tokenizer is read at each call, so binding before the
        transformer is initialized or loaded is fine.

        model: The transformer model (anything with a ``tokenizer`` attribute).
        """
        if model is not self._model:
            self._model = model
            self._counts = {}

    @property
    def tokenizer(self) -> Any:
        """The tokenizer that counts wordpieces, or None (unbound, or the
        transformer is not initialized or loaded yet)."""
        if self._model is not None:
            tokenizer = getattr(self._model, "tokenizer", None)
            if tokenizer is not self._tokenizer:
                self._tokenizer = tokenizer
                self._counts = {}
        return self._tokenizer

    def encoder_length(self) -> Optional[int]:
        """RETURNS (Optional[int]): The bound transformer's own maximum length
        (its position embeddings), or None (unbound, not loaded, or none)."""
        if isinstance(self._model, _Holder):
            return self._model.encoder_length
        return encoder_max_length(getattr(self._model, "transformer", None))

    def wordpiece_budget(self, tokenizer: Any) -> Optional[int]:
        """The wordpieces a window's tokens may have: the longest window
        (``max_wordpieces``, capped at the tokenizer's ``model_max_length``
        and at the encoder's own maximum length) less the special tokens the
        tokenizer adds ([CLS], [SEP]). None when none gives a limit.

        RETURNS (Optional[int]): The budget, at least 1.
        """
        limit = max_wordpieces(tokenizer)
        encoder = self.encoder_length()
        if encoder is not None:
            limit = encoder if limit is None else min(limit, encoder)
        if self.max_wordpieces is not None:
            limit = self.max_wordpieces if limit is None else min(limit, self.max_wordpieces)
        if limit is None:
            return None
        return max(1, limit - tokenizer.num_special_tokens_to_add(pair=False))

    def wordpiece_counts(self, doc: Doc, tokenizer: Any) -> numpy.ndarray:
        """The wordpieces of each token of a doc, counted with one batched
        tokenizer call for the token strings not yet in the cache. A token is
        counted with a leading space, as it appears in running text (byte-level
        BPE tokenizers mark it; BERT's ignores it).

        RETURNS (numpy.ndarray): (len(doc),) int64 counts (0 for whitespace).
        """
        texts = [token.text for token in doc]
        counts = self._counts
        new = list({text for text in texts if text not in counts})
        if new:
            if len(counts) + len(new) > self.CACHE_SIZE:
                counts.clear()
            # verbose=False: a token longer than the encoder's maximum is
            # expected here (it gets a window of its own), so transformers'
            # "will result in indexing errors" warning would be untrue
            ids = tokenizer([" " + text for text in new], add_special_tokens=False, verbose=False)["input_ids"]
            counts.update(zip(new, map(len, ids)))
        return numpy.fromiter((counts[text] for text in texts), dtype="int64", count=len(texts))

    def doc_windows(self, doc: Doc) -> List[Span]:
        tokenizer = self.tokenizer
        budget = self.wordpiece_budget(tokenizer) if tokenizer is not None else None
        if budget is None or not len(doc):
            return super().doc_windows(doc)
        counts = self.wordpiece_counts(doc, tokenizer)
        # cum[i]: wordpieces of tokens 0..i-1, so tokens [s, e) have cum[e] - cum[s]
        cum = numpy.concatenate([[0], numpy.cumsum(counts)])
        windows = []
        for start, end in self._units(doc):
            s = start
            while True:
                e = min(end, s + self.max_tokens)
                if cum[e] - cum[s] > budget:
                    # the last end within the budget, or the token alone if it
                    # is longer than a whole window
                    e = max(s + 1, int(numpy.searchsorted(cum, cum[s] + budget, side="right")) - 1)
                    if e == s + 1 and counts[s] > budget:
                        _warn_long_token(doc, s, int(counts[s]), budget)
                windows.append(doc[s:e])
                if e >= end:
                    break
                # stride tokens on (proportionally fewer after a window cut
                # by wordpieces), but at least so far that the next window
                # reaches past this one's end (else it would be a part of it)
                reach = int(numpy.searchsorted(cum, cum[e + 1] - budget, side="left"))
                s = min(e, max(s + max(1, self.stride * (e - s) // self.max_tokens), reach))
        return windows

    def __getstate__(self) -> Dict[str, Any]:
        # Pickled with the tokenizer itself and the encoder's maximum length,
        # not the model that holds them.
        state = dict(self.__dict__)
        state["_tokenizer"] = self.tokenizer
        state["_encoder_length"] = self.encoder_length()
        state["_model"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        encoder_length = state.pop("_encoder_length", None)
        self.__dict__.update(state)
        if self._model is None and self._tokenizer is not None:
            self._model = _Holder(self._tokenizer, encoder_length)


class _Holder:
    """Stands for the transformer model of an unpickled getter: it holds the
    tokenizer the getter was pickled with and the encoder's maximum length."""

    def __init__(self, tokenizer: Any, encoder_length: Optional[int] = None):
        self.tokenizer = tokenizer
        self.encoder_length = encoder_length


def _warn_long_token(doc: Doc, i: int, n_wordpieces: int, budget: int) -> None:
    text = doc[i].text
    shown = text if len(text) <= 60 else text[:57] + "..."
    warnings.warn(
        f"[spacy-spert] Token {i} of a doc ({shown!r}, {len(text)} characters) splits into {n_wordpieces} "
        f"wordpieces, more than a whole transformer window holds ({budget} besides the special tokens): it is "
        f"encoded alone in its own window and the transformer keeps only its first wordpieces. Its entities "
        f"are found from that beginning; the tokens around it are not affected.",
        stacklevel=2,
    )


def bind_wordpiece_windows(nlp: Any) -> int:
    """Bind every ``sentence_windows.v2`` span getter of a pipeline's
    transformer components to its transformer model, so that it counts
    wordpieces with that model's tokenizer, and give every spacy-transformers
    transformer model the alignment from whitespace-trimmed offsets
    (``alignment.install_aligned_forward``). The ``spert`` component does
    this when it is created and initialized; call it for pipelines without one.

    nlp (Language): The pipeline.
    RETURNS (int): The number of getters bound.
    """
    n = 0
    for _, component in nlp.pipeline:
        model = getattr(component, "model", None)
        attrs = getattr(model, "attrs", None)
        getter = attrs.get("get_spans") if isinstance(attrs, dict) else None
        if getter is not None:
            install_aligned_forward(model)
        if isinstance(getter, WordpieceWindows):
            getter.bind(model)
            n += 1
    return n


@registry.span_getters("spacy-spert.sentence_windows.v2")  # type: ignore[attr-defined]
def configure_wordpiece_windows(
    max_tokens: int = 128, stride: int = 96, max_wordpieces: Optional[int] = None
) -> Callable[[Iterable[Doc]], List[List[Span]]]:
    """Sentence windows bounded in tokens and in wordpieces (see
    ``WordpieceWindows``): no token loses its wordpieces to the transformer's
    truncation, whatever its text (URLs, identifiers, chemical names).

    max_tokens (int): The longest window, in tokens.
    stride (int): Start-to-start distance of the windows of a long sentence.
    max_wordpieces (Optional[int]): The longest window in wordpieces, special
        tokens included (null: the tokenizer's maximum, 512 for BERT).
    RETURNS: A span getter for the ``transformer`` component.
    """
    return WordpieceWindows(max_tokens, stride, max_wordpieces)
