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
"""
from typing import Callable, Iterable, List

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry  # adds registry.span_getters


def get_doc_spans(docs: Iterable[Doc]) -> List[List[Span]]:
    """Map each doc to [doc[:]], or to [] when it is empty."""
    return [[doc[:]] if len(doc) else [] for doc in docs]


@registry.span_getters("spacy-spert.doc_spans.v1")
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
        if doc.has_annotation("SENT_START") or doc.has_annotation("DEP"):
            units = [(sent.start, sent.end) for sent in doc.sents]
        else:
            units = [(0, len(doc))]
        windows = []
        for start, end in units:
            windows.append(doc[start : min(end, start + self.max_tokens)])
            last = start
            while last + self.max_tokens < end:
                last += self.stride
                windows.append(doc[last : min(end, last + self.max_tokens)])
        return windows


@registry.span_getters("spacy-spert.sentence_windows.v1")
def configure_sentence_windows(max_tokens: int = 128, stride: int = 96) -> Callable[[Iterable[Doc]], List[List[Span]]]:
    """Sentence windows, long sentences cut into strided windows.

    max_tokens (int): The longest window, in tokens (128: about 200
        wordpieces of English with a BERT vocabulary, well within 512).
    stride (int): Start-to-start distance of the windows of a long sentence.
    RETURNS: A span getter for the ``transformer`` component.
    """
    return SentenceWindows(max_tokens, stride)
