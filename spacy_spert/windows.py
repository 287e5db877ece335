"""Span getters: the windows of a doc that the transformer encodes.

``spacy-spert.doc_spans.v1`` encodes each doc in one window, like
``spacy-transformers.doc_spans.v1``, but gives an empty doc no window (the
spacy-transformers getter fails on empty docs, E1002).
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
