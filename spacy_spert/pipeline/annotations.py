"""Writing the model's predictions to docs: entities to a ``SpanGroup`` in
``doc.spans[spans_key]`` (scores in ``attrs["scores"]``), relations to
``doc._.relations`` as the dicts of ``relations.py`` (built with
``make_relation``), and optionally the best non-overlapping entities to
``doc.ents``. With given entities only the relations are written."""

from typing import Dict, List, Optional, Sequence, Set

import numpy
from spacy.tokens import Doc, Span, SpanGroup

from ..models.architectures import SpERTPredictions
from ..models.suggesters import Candidates
from ..relations import RELATIONS_ATTR, canonical_order, make_relation


def write_predictions(
    docs: Sequence[Doc],
    candidates: Candidates,
    predictions: SpERTPredictions,
    *,
    entity_labels: Sequence[str],
    relation_labels: Sequence[str],
    spans_key: str,
    symmetric_relations: Sequence[str] = (),
    set_ents: bool = False,
    given_entities: Optional[Sequence[Sequence[Span]]] = None,
) -> None:
    """Write the predicted entities and relations of a batch to its docs.

    docs (Sequence[Doc]): The docs, in the order of the candidates.
    candidates (Candidates): The candidates the model classified.
    predictions (SpERTPredictions): The model's decoded output.
    entity_labels, relation_labels (Sequence[str]): The label names.
    spans_key (str): The span group to write the entities to.
    symmetric_relations (Sequence[str]): Relation types written once per
        pair, with the earlier span as head.
    set_ents (bool): Also write the best non-overlapping entities to doc.ents.
    given_entities (Optional[Sequence[Sequence[Span]]]): Per doc, the given
        entities the candidates were made of, in candidate order: relations
        are written between them (keeping their labels), entities are not
        written.
    """
    p = predictions
    # Python numbers once, not one numpy scalar at a time
    ent_span, ent_label = p.entity_spans.tolist(), p.entity_labels.tolist()
    ent_start, ent_end = candidates.starts[p.entity_spans].tolist(), candidates.ends[p.entity_spans].tolist()
    rel_head, rel_tail = p.relation_heads.tolist(), p.relation_tails.tolist()
    rel_label, rel_score = p.relation_labels.tolist(), p.relation_scores.tolist()
    if len(docs) == 1:  # every span and pair is the doc's: no search
        span_docs = None
        doc_ents, doc_rels = [numpy.arange(len(ent_span))], [range(len(rel_head))]
    else:
        span_docs = candidates.span_docs()
        ent_docs, rel_docs = span_docs[p.entity_spans], span_docs[p.relation_heads]
        doc_ents = [numpy.flatnonzero(ent_docs == d) for d in range(len(docs))]
        doc_rels = [numpy.flatnonzero(rel_docs == d).tolist() for d in range(len(docs))]
    for d, doc in enumerate(docs):
        offset = int(candidates.doc_offsets[d])
        mine = doc_ents[d]
        spans: Dict[int, Span] = {}
        if given_entities is not None:
            first = 0 if span_docs is None else int(numpy.searchsorted(span_docs, d))
            spans = {first + i: span for i, span in enumerate(given_entities[d])}
        else:
            for i in mine.tolist():
                spans[ent_span[i]] = Span(
                    doc, ent_start[i] - offset, ent_end[i] - offset, label=entity_labels[ent_label[i]]
                )
            entities = list(spans.values())
            scores = p.entity_scores[mine]
            doc.spans[spans_key] = SpanGroup(doc, name=spans_key, spans=entities, attrs={"scores": scores})
        relations = [
            make_relation(spans[rel_head[q]], spans[rel_tail[q]], relation_labels[rel_label[q]], rel_score[q])
            for q in doc_rels[d]
        ]
        if symmetric_relations:
            relations = canonical_order(relations, symmetric_relations)
        doc._.set(RELATIONS_ATTR, relations)
        if set_ents and given_entities is None:
            doc.ents = best_non_overlapping(entities, scores)


def best_non_overlapping(spans: List[Span], scores: numpy.ndarray) -> List[Span]:
    """The highest-scoring spans that do not overlap, in document order.

    spans (List[Span]): The candidate entities.
    scores (numpy.ndarray): One score per span.
    RETURNS (List[Span]): The chosen spans, sorted by start.
    """
    taken: Set[int] = set()
    chosen = []
    for i in numpy.argsort(-scores, kind="stable"):
        span = spans[i]
        tokens = range(span.start, span.end)
        if not taken.intersection(tokens):
            taken.update(tokens)
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)
