"""Evaluation of joint entity and relation extraction, as in the SpERT paper.

The semantics follow the reference evaluator of SpERT (``spert/evaluator.py``
in lavis-nlp/spert), so that the numbers compare with the published ones:

* NER: a predicted entity is the tuple ``(start, end, type)``; it is correct iff
  the gold data of the same doc holds the identical tuple. Entities are sets
  per doc, so duplicates count once. A span with the right boundaries but the
  wrong type is one false positive and one false negative.
* Relations, "strict" mode: the tuple ``(head_start, head_end, head_type,
  tail_start, tail_end, tail_type, label)`` must match a gold tuple.
* Relations, "boundaries" mode: the tuple ``(head_start, head_end, tail_start,
  tail_end, label)`` must match (entity types are ignored).
* Relations of symmetric types are put in canonical order (the earlier span by
  ``(start, end)`` as head) on both sides before they are compared.
* Micro P/R/F1 are computed from the counts summed over all types. Macro
  P/R/F1 are the unweighted means of the per-type P, R and F1 over the types
  that occur in the gold data or the predictions (a per-type value is 0.0 when
  it is undefined, like scikit-learn's ``zero_division=0``).

All values are fractions in [0, 1] (the spaCy convention; the SpERT evaluator
prints percentages). With nothing to score every value is 0.0. The counting is
spaCy's :class:`spacy.scorer.PRFScore`, one per type.

``SCORE_MODES`` and ``SCORE_NAMES`` are the one table of the headline scores'
names: their keys here, their names in results files (``"rel_strict_macro"``)
and their labels in tables (``"RE strict macro F1"``). The CLI, the evaluation
tables and the results files of :mod:`research` all use it.

The component's ``score`` method calls :func:`score_spert` with its whole
config as keyword arguments; unknown keyword arguments are ignored.
"""

from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

import spacy
from spacy.scorer import PRFScore
from spacy.tokens import Doc, Span
from spacy.training import Example

from ..relations import RELATIONS_ATTR, EntityIndex, canonical_order

# A tuple that identifies an entity or a relation in one doc (its last element
# or, for relations, its label decides the type it is counted under).
Key = Tuple[Any, ...]
# Per type: the set of (doc index, key) items.
KeySets = Dict[str, Set[Tuple[int, Key]]]
PRF = Tuple[float, float, float]
PerType = Dict[str, Dict[str, float]]

# The prefixes of the returned keys, one per evaluation mode.
ENT_PREFIX = "spert_ent"
REL_PREFIX = "spert_rel"
REL_BOUND_PREFIX = "spert_rel_bound"
MODE_PREFIXES = (ENT_PREFIX, REL_PREFIX, REL_BOUND_PREFIX)
# The suffixes of the returned keys, per mode.
METRIC_SUFFIXES = ("p", "r", "f", "macro_p", "macro_r", "macro_f", "per_type")


def score_keys(prefix: str) -> Dict[str, str]:
    """The names of the returned scores of one evaluation mode.

    prefix (str): One of ``ENT_PREFIX``, ``REL_PREFIX``, ``REL_BOUND_PREFIX``.
    RETURNS (Dict[str, str]): Suffix (``"p"``, ``"macro_f"``, ``"per_type"``,
        ...) -> the key in the dict returned by :func:`score_spert`, e.g.
        ``"spert_rel_bound_macro_f"``.
    """
    return {suffix: f"{prefix}_{suffix}" for suffix in METRIC_SUFFIXES}


# Every key returned by score_spert, in order.
SCORE_KEYS: Tuple[str, ...] = tuple(key for prefix in MODE_PREFIXES for key in score_keys(prefix).values())


# ---------------------------------------------------------------------------
# The names of the scores: one table for the CLI, tables and results files
# ---------------------------------------------------------------------------


class ScoreMode(NamedTuple):
    """An evaluation mode of :func:`score_spert`.

    name (str): The mode in results files: ``"ner"`` gives ``"ner_micro"``,
        ``"ner_macro"`` and ``"ner_per_type"``.
    label (str): The mode in tables, e.g. ``"RE strict"``.
    prefix (str): The prefix of the mode's keys in the scores, e.g. ``"spert_rel"``.
    """

    name: str
    label: str
    prefix: str


SCORE_MODES: Tuple[ScoreMode, ...] = (
    ScoreMode("ner", "NER", ENT_PREFIX),
    ScoreMode("rel_strict", "RE strict", REL_PREFIX),
    ScoreMode("rel_boundaries", "RE boundaries", REL_BOUND_PREFIX),
)
AVERAGES = ("micro", "macro")
# How tables name precision, recall and F1.
METRIC_LABELS = {"p": "P", "r": "R", "f": "F1"}


class ScoreName(NamedTuple):
    """A headline score: one evaluation mode, averaged one way.

    mode (ScoreMode): The evaluation mode.
    average (str): ``"micro"`` or ``"macro"``.
    """

    mode: ScoreMode
    average: str

    @property
    def name(self) -> str:
        """The name in results files, e.g. ``"rel_strict_macro"``."""
        return f"{self.mode.name}_{self.average}"

    def key(self, metric: str = "f") -> str:
        """The key in the scores of :func:`score_spert`.

        metric (str): ``"p"``, ``"r"`` or ``"f"``.
        RETURNS (str): E.g. ``"spert_rel_macro_f"``.
        """
        suffix = metric if self.average == "micro" else f"macro_{metric}"
        return score_keys(self.mode.prefix)[suffix]

    def label(self, metric: str = "f") -> str:
        """The label in tables.

        metric (str): ``"p"``, ``"r"`` or ``"f"``.
        RETURNS (str): E.g. ``"NER micro F1"``, ``"RE strict macro P"``.
        """
        return f"{self.mode.label} {self.average} {METRIC_LABELS[metric]}"


# NER micro, NER macro, RE strict micro, ..., RE boundaries macro.
SCORE_NAMES: Tuple[ScoreName, ...] = tuple(ScoreName(mode, average) for mode in SCORE_MODES for average in AVERAGES)


def score_name(name: str) -> ScoreName:
    """Look up a headline score by its name in results files.

    name (str): E.g. ``"rel_boundaries_micro"``.
    RETURNS (ScoreName): The score.
    RAISES: KeyError for an unknown name.
    """
    for score in SCORE_NAMES:
        if score.name == name:
            return score
    raise KeyError(f"unknown score {name!r}; known: {', '.join(s.name for s in SCORE_NAMES)}")


# ---------------------------------------------------------------------------
# Counting (pure functions, with spaCy's PRFScore)
# ---------------------------------------------------------------------------


def prf_from_counts(tp: int, fp: int, fn: int) -> PRF:
    """Precision, recall and F1 from counts.

    tp, fp, fn (int): True positives, false positives, false negatives.
    RETURNS (Tuple[float, float, float]): (precision, recall, F1); each is 0.0
        where it is undefined.
    """
    prf = PRFScore(tp=tp, fp=fp, fn=fn)
    return prf.precision, prf.recall, prf.fscore


def prf_from_sets(gold: Mapping[str, Set[Any]], pred: Mapping[str, Set[Any]]) -> Tuple[PRF, PRF, PerType]:
    """Micro, macro and per-type P/R/F1 of predicted items against gold items.

    An item is correct iff the set of its type in ``gold`` holds it. The items
    of different docs must differ (e.g. ``(doc index, key)`` pairs).

    gold (Dict[str, Set]): Type -> the set of gold items of that type.
    pred (Dict[str, Set]): Type -> the set of predicted items of that type.
    RETURNS (Tuple[PRF, PRF, Dict[str, Dict[str, float]]]): ``(micro, macro,
        per_type)``. ``micro`` and ``macro`` are (p, r, f) triples; ``macro``
        averages the per-type values over the types with a non-empty set in
        ``gold`` or ``pred`` (macro F1 is the mean of the per-type F1).
        ``per_type`` maps each such type to ``{"p": .., "r": .., "f": ..}``.
        Everything is 0.0 when there are no items.
    """
    types = sorted(t for t in set(gold) | set(pred) if gold.get(t) or pred.get(t))
    micro = PRFScore()
    per_type: PerType = {}
    for label in types:
        prf = PRFScore()
        prf.score_set(pred.get(label, set()), gold.get(label, set()))
        micro += prf
        per_type[label] = prf.to_dict()
    macro = tuple(
        sum(scores[m] for scores in per_type.values()) / len(types) if types else 0.0 for m in ("p", "r", "f")
    )
    return (micro.precision, micro.recall, micro.fscore), macro, per_type  # type: ignore[return-value]


def group_by_type(keyed: Iterable[Tuple[int, Key]], type_of: Callable[[Key], str]) -> KeySets:
    """Collect ``(doc index, key)`` items into one set per type.

    keyed (Iterable[Tuple[int, Key]]): The items.
    type_of (Callable[[Key], str]): Returns the type of a key.
    RETURNS (Dict[str, Set]): Type -> set of items; duplicates are merged.
    """
    out: KeySets = {}
    for i, key in keyed:
        out.setdefault(type_of(key), set()).add((i, key))
    return out


def scores_dict(prefix: str, micro: PRF, macro: PRF, per_type: PerType) -> Dict[str, Any]:
    """The returned entries of one evaluation mode.

    prefix (str): The mode's key prefix (see :func:`score_keys`).
    micro, macro (Tuple[float, float, float]): (p, r, f).
    per_type (Dict[str, Dict[str, float]]): As returned by :func:`prf_from_sets`.
    RETURNS (Dict[str, Any]): Key -> value for the 7 keys of the mode.
    """
    names = score_keys(prefix)
    values: Dict[str, Any] = dict(zip(("p", "r", "f"), micro))
    values.update(zip(("macro_p", "macro_r", "macro_f"), macro))
    values["per_type"] = per_type
    return {names[suffix]: values[suffix] for suffix in METRIC_SUFFIXES}


# ---------------------------------------------------------------------------
# Reading entities and relations from docs
# ---------------------------------------------------------------------------

# Maps a (start, end) token span of the doc read to the reference doc's token
# offsets, or returns None when the span does not align.
SpanMapper = Callable[[int, int], Optional[Tuple[int, int]]]


def _identity(start: int, end: int) -> Optional[Tuple[int, int]]:
    return start, end


def _unaligned(start: int, end: int) -> Tuple[Any, Any]:
    """Boundaries for a predicted span that has no counterpart in the reference
    tokenization: unique per predicted span, never equal to gold boundaries."""
    return ("<unaligned>", start), ("<unaligned>", end)


def _map(mapper: SpanMapper, start: int, end: int) -> Tuple[Any, Any]:
    mapped = mapper(start, end)
    return mapped if mapped is not None else _unaligned(start, end)


def make_span_mapper(eg: Example) -> SpanMapper:
    """A function that maps token spans of ``eg.predicted`` to ``eg.reference``.

    When both docs have the same words the offsets are returned unchanged.
    Otherwise a span is mapped through the Example's alignment
    (``Example.get_aligned_spans_x2y``); a span whose text does not cover whole
    reference tokens maps to None.

    eg (Example): The example.
    RETURNS (Callable[[int, int], Optional[Tuple[int, int]]]): The mapper.
    """
    pred, ref = eg.predicted, eg.reference
    if len(pred) == len(ref) and all(p.text == r.text for p, r in zip(pred, ref)):
        return _identity
    cache: Dict[Tuple[int, int], Optional[Tuple[int, int]]] = {}

    def mapper(start: int, end: int) -> Optional[Tuple[int, int]]:
        if (start, end) not in cache:
            aligned = eg.get_aligned_spans_x2y([Span(pred, start, end)], allow_overlap=True)
            cache[(start, end)] = (aligned[0].start, aligned[0].end) if aligned else None
        return cache[(start, end)]

    return mapper


def entity_keys(doc: Doc, spans_key: str, mapper: SpanMapper = _identity) -> List[Key]:
    """The entity tuples ``(start, end, type)`` of a doc.

    doc (Doc): The doc.
    spans_key (str): The span group that holds the entities.
    mapper (SpanMapper): Maps the doc's offsets to the reference offsets.
    RETURNS (List[tuple]): One tuple per span (may repeat).
    """
    if spans_key not in doc.spans:
        return []
    return [(*_map(mapper, s.start, s.end), s.label_) for s in doc.spans[spans_key]]


def relation_keys(
    doc: Doc,
    spans_key: str,
    symmetric_relations: Sequence[str] = (),
    mapper: SpanMapper = _identity,
) -> List[Key]:
    """The strict relation tuples of a doc:
    ``(head_start, head_end, head_type, tail_start, tail_end, tail_type, label)``.

    Relations of a type in ``symmetric_relations`` are put in canonical order
    first. An endpoint's type is the relation's ``head_label``/``tail_label``
    if given, else the label of the first span with the same boundaries in the
    span group ``spans_key`` (found with
    :class:`~spacy_spert.relations.EntityIndex`), else None.

    doc (Doc): The doc; relations are read from ``doc._.relations``.
    spans_key (str): The span group that holds the entities.
    symmetric_relations (Sequence[str]): The symmetric relation types.
    mapper (SpanMapper): Maps the doc's offsets to the reference offsets.
    RETURNS (List[tuple]): One tuple per relation.
    """
    return [key for key, _ in relation_items(doc, spans_key, symmetric_relations, mapper)]


def relation_items(
    doc: Doc,
    spans_key: str,
    symmetric_relations: Sequence[str] = (),
    mapper: SpanMapper = _identity,
) -> List[Tuple[Key, Dict[str, Any]]]:
    """The strict relation tuples of a doc (see :func:`relation_keys`), each
    with the relation dict it was read from (in canonical order, with the
    doc's own offsets and its score), for the error analysis of
    ``apps/report``.

    doc (Doc): The doc; relations are read from ``doc._.relations``.
    spans_key (str): The span group that holds the entities.
    symmetric_relations (Sequence[str]): The symmetric relation types.
    mapper (SpanMapper): Maps the doc's offsets to the reference offsets.
    RETURNS (List[Tuple[tuple, dict]]): One (tuple, relation) per relation.
    """
    relations = doc._.get(RELATIONS_ATTR) or ()
    if not relations:
        return []
    relations = canonical_order(relations, symmetric_relations)
    entities = EntityIndex.from_spans(doc.spans.get(spans_key, ()))
    items = []
    for rel in relations:
        ends: List[Any] = []
        for side in ("head", "tail"):
            ent_type = rel.get(f"{side}_label")
            if ent_type is None:  # the relation has no label: boundaries decide
                span = entities.endpoint(rel, side)
                ent_type = span.label_ if span is not None else None
            ends.extend((*_map(mapper, rel[f"{side}_start"], rel[f"{side}_end"]), ent_type))
        items.append(((*ends, rel["label"]), rel))
    return items


def boundaries_key(strict_key: Key) -> Key:
    """Drop the entity types from a strict relation tuple:
    ``(head_start, head_end, tail_start, tail_end, label)``."""
    hs, he, _, ts, te, _, label = strict_key
    return hs, he, ts, te, label


def _last(key: Key) -> str:
    return key[-1]


# ---------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------


def score_spert(
    examples: Iterable[Example],
    *,
    spans_key: str = "sc",
    symmetric_relations: Iterable[str] = (),
    **kwargs: Any,
) -> Dict[str, Any]:
    """Score entities and relations the way the SpERT evaluator does.

    Gold entities are ``eg.reference.spans[spans_key]`` and gold relations
    ``eg.reference._.relations``; predictions are the same on ``eg.predicted``.
    When the two docs are tokenized differently, predicted offsets are mapped
    to the reference tokens; a predicted span that does not align is wrong.

    examples (Iterable[Example]): The examples to score.
    spans_key (str): The span group that holds the entities.
    symmetric_relations (Iterable[str]): Relation types whose direction does
        not matter.
    **kwargs: Ignored (``Pipe.score`` passes the component's config).
    RETURNS (Dict[str, Any]): For each prefix ``spert_ent`` (entities),
        ``spert_rel`` (relations, strict) and ``spert_rel_bound`` (relations,
        boundaries): ``{prefix}_p``, ``_r``, ``_f`` (micro), ``_macro_p``,
        ``_macro_r``, ``_macro_f`` and ``_per_type`` (label -> {"p", "r", "f"}).
        See ``SCORE_KEYS``.
    """
    symmetric = tuple(symmetric_relations or ())
    gold_ents: List[Tuple[int, Key]] = []
    pred_ents: List[Tuple[int, Key]] = []
    gold_rels: List[Tuple[int, Key]] = []
    pred_rels: List[Tuple[int, Key]] = []
    for i, eg in enumerate(examples):
        mapper = make_span_mapper(eg)
        gold_ents.extend((i, k) for k in entity_keys(eg.reference, spans_key))
        pred_ents.extend((i, k) for k in entity_keys(eg.predicted, spans_key, mapper))
        gold_rels.extend((i, k) for k in relation_keys(eg.reference, spans_key, symmetric))
        pred_rels.extend((i, k) for k in relation_keys(eg.predicted, spans_key, symmetric, mapper))

    gold_bound = [(i, boundaries_key(k)) for i, k in gold_rels]
    pred_bound = [(i, boundaries_key(k)) for i, k in pred_rels]
    scores: Dict[str, Any] = {}
    for prefix, gold, pred in (
        (ENT_PREFIX, gold_ents, pred_ents),
        (REL_PREFIX, gold_rels, pred_rels),
        (REL_BOUND_PREFIX, gold_bound, pred_bound),
    ):
        micro, macro, per_type = prf_from_sets(group_by_type(gold, _last), group_by_type(pred, _last))
        scores.update(scores_dict(prefix, micro, macro, per_type))
    return scores


@spacy.registry.scorers("spacy-spert.spert_scorer.v1")
def make_spert_scorer() -> Callable[..., Dict[str, Any]]:
    """The registered scorer factory: returns :func:`score_spert`."""
    return score_spert
