"""spacy-spert: SpERT joint entity and relation extraction as a spaCy component.

Importing the package is cheap and changes nothing: spaCy imports it (through
the ``spert`` factory's entry point) whenever it builds any pipeline, so the
names below are loaded on first use (PEP 562), and the ``relations`` extension
is installed by the component, the readers and :func:`install_extensions`.
"""

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: Dict[str, str] = {
    "SpERT": "spacy_spert.pipeline.spert",
    "make_spert": "spacy_spert.pipeline.factory",
    "SpanCandidates": "spacy_spert.models.suggesters",
    "build_span_candidates": "spacy_spert.models.suggesters",
    "GivenEntities": "spacy_spert.models.suggesters",
    "build_given_entities": "spacy_spert.models.suggesters",
    "build_spert_model": "spacy_spert.models.architectures",
    "build_spert_mt_model": "spacy_spert.models.architectures",
    "score_spert": "spacy_spert.pipeline.scorer",
    "make_spert_scorer": "spacy_spert.pipeline.scorer",
    "RelationSpans": "spacy_spert.relations",
    "get_relation_spans": "spacy_spert.relations",
    "make_relation": "spacy_spert.relations",
    "install_extensions": "spacy_spert.relations",
    "doc_to_record": "spacy_spert.io.records",
    "render": "spacy_spert.apps.render",
    "quantize": "spacy_spert.transformer.quantize",
}

__all__: List[str] = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .apps.render import render as render
    from .io.records import doc_to_record as doc_to_record
    from .models.architectures import build_spert_model as build_spert_model
    from .models.architectures import build_spert_mt_model as build_spert_mt_model
    from .models.suggesters import GivenEntities as GivenEntities
    from .models.suggesters import SpanCandidates as SpanCandidates
    from .models.suggesters import build_given_entities as build_given_entities
    from .models.suggesters import build_span_candidates as build_span_candidates
    from .pipeline.factory import make_spert as make_spert
    from .pipeline.scorer import make_spert_scorer as make_spert_scorer
    from .pipeline.scorer import score_spert as score_spert
    from .pipeline.spert import SpERT as SpERT
    from .relations import RelationSpans as RelationSpans
    from .relations import get_relation_spans as get_relation_spans
    from .relations import install_extensions as install_extensions
    from .relations import make_relation as make_relation
    from .transformer.quantize import quantize as quantize


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spacy_spert' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
