"""spacy-spert: SpERT joint entity and relation extraction as a spaCy component."""
from .relations import RelationSpans, get_relation_spans, install_extensions, make_relation

install_extensions()

from . import optimizers, windows  # noqa: E402,F401
from .candidates import GivenEntities, SpanCandidates, build_given_entities, build_span_candidates  # noqa: E402
from .component import SpERT, make_spert  # noqa: E402
from .model import build_spert_model, build_spert_mt_model  # noqa: E402
from .predict import doc_to_record  # noqa: E402
from .visualize import render  # noqa: E402
from .scorer import make_spert_scorer, score_spert  # noqa: E402
from . import encoders  # noqa: E402,F401  (registers spacy-spert.installed_model_path.v1)
from . import schedules  # noqa: E402,F401  (registers spacy-spert.warmup_linear_epochs.v1)
from .quantize import quantize  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "SpERT",
    "make_spert",
    "SpanCandidates",
    "build_span_candidates",
    "GivenEntities",
    "build_given_entities",
    "build_spert_model",
    "build_spert_mt_model",
    "score_spert",
    "make_spert_scorer",
    "RelationSpans",
    "get_relation_spans",
    "make_relation",
    "install_extensions",
    "doc_to_record",
    "render",
    "quantize",
]
