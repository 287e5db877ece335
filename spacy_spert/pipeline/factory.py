"""The ``spert`` factory: its default settings and :func:`make_spert`.

spaCy imports this module through the ``spacy_factories`` entry point whenever
it builds any pipeline, in every program of an environment where spacy-spert
is installed. So it imports only spaCy and thinc (no torch, no transformers)
and has no side effects beyond registering the factory; the component
(:mod:`spacy_spert.pipeline.spert`) is imported when a ``spert`` is created.
"""

from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from spacy.language import Language
from thinc.api import Config, Model

from ..models.suggesters import Suggester

if TYPE_CHECKING:  # pragma: no cover
    from .spert import SpERT

DEFAULT_SPERT_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy-spert.SpERT.v1"
width_embedding_size = 25
max_width_embeddings = 100
dropout = 0.1
pair_batch_size = 4096
max_pair_entities_per_token = 0.5

[model.tok2vec]
@layers = "spacy-spert.WordpieceListener.v1"
upstream = "*"
"""
)["model"]

DEFAULT_SUGGESTER = {
    "@misc": "spacy-spert.span_candidates.v1",
    "max_width": 10,
    "scope": "sentence",
    "max_group_length": 128,
}


@Language.factory(
    "spert",
    assigns=["doc.spans", "doc._.relations"],
    default_config={
        "model": DEFAULT_SPERT_MODEL,
        "suggester": DEFAULT_SUGGESTER,
        "spans_key": "sc",
        "neg_entity_count": 100,
        "neg_relation_count": 100,
        "threshold": 0.4,
        "entity_thresholds": {},
        "relation_thresholds": {},
        "symmetric_relations": [],
        "set_ents": False,
        "scorer": {"@scorers": "spacy-spert.spert_scorer.v1"},
    },
    default_score_weights={"spert_ent_f": 0.5, "spert_rel_f": 0.5, "spert_rel_bound_f": 0.0},
)
def make_spert(
    nlp: Language,
    name: str,
    model: Model,
    suggester: Suggester,
    spans_key: str,
    neg_entity_count: int,
    neg_relation_count: int,
    threshold: float,
    entity_thresholds: Dict[str, float],
    relation_thresholds: Dict[str, float],
    symmetric_relations: List[str],
    set_ents: bool,
    scorer: Optional[Callable],
) -> "SpERT":
    """Create a ``spert`` component.

    model (Model): A SpERT architecture, e.g. ``spacy-spert.SpERT.v1``.
    suggester (Suggester): The candidate spans and their pairing groups:
        ``spacy-spert.span_candidates.v1`` (every span of up to 10 tokens
        within a sentence; pairs within groups of at most 128 tokens), or
        ``spacy-spert.given_entities.v1`` to classify only the relations among
        the entities of ``doc.ents`` or a span group that an earlier component
        (or the data) sets; they keep their labels, and training learns the
        relations only.
    spans_key (str): The ``doc.spans`` key that holds the entities.
    neg_entity_count (int): Negative spans sampled per doc in training (100).
    neg_relation_count (int): Negative entity pairs sampled per doc (100).
    threshold (float): Relations with a score >= threshold are kept (0.4);
        SpERT.MT: theta on the raw class scores of entities and relations.
    entity_thresholds (Dict[str, float]): Per entity label, the score its
        entities need: a span whose best label has a lower score is no
        entity. Labels left out: no threshold (SpERT, the argmax over "none"
        and the types decides) or ``threshold`` (SpERT.MT). Not with given
        entities. Written by ``tune-thresholds``.
    relation_thresholds (Dict[str, float]): Per relation label, its
        threshold instead of ``threshold``. Scores are never changed by
        thresholds, only what is kept.
    symmetric_relations (List[str]): Relation types whose direction is
        meaningless; they are output with the earlier span as head.
    set_ents (bool): Also write the best non-overlapping entities to doc.ents.
    scorer (Optional[Callable]): The scoring function.
    """
    # The transformers of the pipeline come before spert: their
    # sentence_windows.v2 span getters learn which tokenizer counts wordpieces.
    from ..transformer.span_getters import bind_wordpiece_windows
    from .spert import SpERT

    bind_wordpiece_windows(nlp)
    return SpERT(
        nlp.vocab,
        model,
        suggester,
        name,
        spans_key=spans_key,
        neg_entity_count=neg_entity_count,
        neg_relation_count=neg_relation_count,
        threshold=threshold,
        entity_thresholds=entity_thresholds,
        relation_thresholds=relation_thresholds,
        symmetric_relations=symmetric_relations,
        set_ents=set_ents,
        scorer=scorer,
    )
