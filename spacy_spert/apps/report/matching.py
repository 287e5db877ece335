"""The entities and relations of one gold doc and its prediction, and the
errors between them: every false positive and every false negative goes into
exactly one error bucket (see the precedence in the package docstring,
``spacy_spert.apps.report``).

Identity follows the scorer (``pipeline/scorer.py``): entities are the tuples
``(start, end, type)`` of :func:`~spacy_spert.pipeline.scorer.entity_keys`,
relations the strict tuples of
:func:`~spacy_spert.pipeline.scorer.relation_items`, predicted offsets
mapped to the gold tokens by
:func:`~spacy_spert.pipeline.scorer.make_span_mapper`, items compared as sets.
Overlap (for wrong boundaries) is decided on character offsets, which both
docs share, so a predicted span that does not align with the gold tokens
still overlaps what it covers.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from spacy.tokens import Doc
from spacy.training import Example

from ...pipeline.scorer import Key, SpanMapper, entity_keys, make_span_mapper, relation_items

# The buckets, in the order of precedence: (name, what it holds). A pair
# bucket holds a false positive matched to a false negative; the others hold
# one item.
ENTITY_BUCKETS: Tuple[Tuple[str, str], ...] = (
    ("wrong_type", "right boundaries, wrong type"),
    ("wrong_boundaries", "wrong boundaries, right type"),
    ("wrong_both", "wrong boundaries and wrong type"),
    ("spurious", "spurious: overlaps no gold entity that is missing"),
    ("missed", "missed: no unmatched prediction overlaps it"),
)
RELATION_BUCKETS: Tuple[Tuple[str, str], ...] = (
    ("wrong_type", "wrong relation type, same entities"),
    ("reversed", "reversed direction, same type"),
    ("wrong_endpoint", "an endpoint with wrong boundaries or type, same type"),
    ("spurious_correct_entities", "spurious between correct entities"),
    ("spurious_entity", "spurious because an entity is spurious"),
    ("missed_entity", "missed because an entity was missed"),
    ("missed_entities_found", "missed with both entities found"),
)
ENTITY_PAIRS = ("wrong_type", "wrong_boundaries", "wrong_both")
RELATION_PAIRS = ("wrong_type", "reversed", "wrong_endpoint")


@dataclass(frozen=True)
class Entity:
    """An entity (or a relation's endpoint) of one doc.

    key (tuple): ``(start, end, type)`` in gold tokens (the scorer's key).
    label (str): The entity type ("" when unknown).
    start, end (int): Character offsets (exclusive end).
    text (str): The covered text.
    score (Optional[float]): The predicted score; None for gold entities.
    """

    key: Key
    label: str
    start: int
    end: int
    text: str
    score: Optional[float] = None

    def overlap(self, other: "Entity") -> int:
        """RETURNS (int): The characters this entity shares with ``other``."""
        return max(0, min(self.end, other.end) - max(self.start, other.start))

    def to_dict(self) -> Dict[str, Any]:
        return {"text": self.text, "label": self.label, "start": self.start, "end": self.end, "score": self.score}


@dataclass(frozen=True)
class Relation:
    """A relation of one doc.

    key (tuple): The scorer's strict tuple ``(head_start, head_end,
        head_type, tail_start, tail_end, tail_type, label)``.
    head, tail (Entity): The endpoints (keys ``key[:3]`` and ``key[3:6]``).
    label (str): The relation type.
    score (Optional[float]): The predicted score; None for gold relations.
    """

    key: Key
    head: Entity
    tail: Entity
    label: str
    score: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"label": self.label, "score": self.score, "head": self.head.to_dict(), "tail": self.tail.to_dict()}


Item = Union[Entity, Relation]


@dataclass
class ErrorItem:
    """One error: a false positive paired with a false negative, or one of them alone.

    kind (str): "entities" or "relations".
    bucket (str): The bucket's name (``ENTITY_BUCKETS`` / ``RELATION_BUCKETS``).
    doc (int): The doc's index in the evaluated examples.
    gold (Optional[Item]): The false negative, if any.
    predicted (Optional[Item]): The false positive, if any.
    """

    kind: str
    bucket: str
    doc: int
    gold: Optional[Item] = None
    predicted: Optional[Item] = None

    @property
    def score(self) -> Optional[float]:
        """The predicted item's score (None for a miss)."""
        return self.predicted.score if self.predicted is not None else None


@dataclass
class DocItems:
    """The entities and relations of one example, by their scorer keys
    (duplicates merged, the highest score kept)."""

    gold_entities: Dict[Key, Entity] = field(default_factory=dict)
    pred_entities: Dict[Key, Entity] = field(default_factory=dict)
    gold_relations: Dict[Key, Relation] = field(default_factory=dict)
    pred_relations: Dict[Key, Relation] = field(default_factory=dict)


def _char_span(doc: Doc, start: int, end: int) -> Tuple[int, int]:
    span = doc[start:end]
    return span.start_char, span.end_char


def _keep(items: Dict[Key, Any], key: Key, item: Any) -> None:
    """Keep one item per key, the one with the highest score (as the scorer's sets do)."""
    old = items.get(key)
    if old is None or (item.score is not None and (old.score is None or item.score > old.score)):
        items[key] = item


def read_entities(
    doc: Doc, spans_key: str, mapper: Optional[SpanMapper] = None, scored: bool = False
) -> Dict[Key, Entity]:
    """The entities of ``doc.spans[spans_key]`` by their scorer keys.

    doc (Doc): The doc. spans_key (str): The span group.
    mapper (Optional[SpanMapper]): Maps the doc's tokens to the gold tokens.
    scored (bool): Read ``attrs["scores"]`` (predictions).
    RETURNS (Dict[tuple, Entity]): Key -> entity.
    """
    keys = entity_keys(doc, spans_key, mapper) if mapper is not None else entity_keys(doc, spans_key)
    if not keys:
        return {}
    group = doc.spans[spans_key]
    scores = group.attrs.get("scores") if scored else None
    if scores is not None and len(scores) != len(group):
        scores = None
    out: Dict[Key, Entity] = {}
    for i, (key, span) in enumerate(zip(keys, group)):
        score = float(scores[i]) if scores is not None else None
        _keep(out, key, Entity(key, span.label_, span.start_char, span.end_char, span.text, score))
    return out


def read_relations(
    doc: Doc,
    spans_key: str,
    symmetric_relations: Sequence[str],
    mapper: Optional[SpanMapper] = None,
    scored: bool = False,
) -> Dict[Key, Relation]:
    """The relations of ``doc._.relations`` by their strict scorer keys.

    doc (Doc): The doc. spans_key (str): The span group of the entities.
    symmetric_relations (Sequence[str]): Relation types put in canonical order.
    mapper (Optional[SpanMapper]): Maps the doc's tokens to the gold tokens.
    scored (bool): Keep the relations' scores (predictions).
    RETURNS (Dict[tuple, Relation]): Key -> relation.
    """
    items = (
        relation_items(doc, spans_key, symmetric_relations, mapper)
        if mapper is not None
        else relation_items(doc, spans_key, symmetric_relations)
    )
    out: Dict[Key, Relation] = {}
    for key, rel in items:
        ends = []
        for side, sub in (("head", key[0:3]), ("tail", key[3:6])):
            start, end = _char_span(doc, rel[f"{side}_start"], rel[f"{side}_end"])
            ends.append(Entity(sub, sub[2] or "", start, end, doc.text[start:end]))
        score = float(rel.get("score", 1.0)) if scored else None
        _keep(out, key, Relation(key, ends[0], ends[1], key[-1], score))
    return out


def read_example(eg: Example, spans_key: str, symmetric_relations: Sequence[str]) -> DocItems:
    """The gold (``eg.reference``) and predicted (``eg.predicted``) items of an example.

    eg (Example): The example, its predicted doc processed by the pipeline.
    spans_key (str): The span group of the entities.
    symmetric_relations (Sequence[str]): The symmetric relation types.
    RETURNS (DocItems): The items.
    """
    mapper = make_span_mapper(eg)
    return DocItems(
        read_entities(eg.reference, spans_key),
        read_entities(eg.predicted, spans_key, mapper, scored=True),
        read_relations(eg.reference, spans_key, symmetric_relations),
        read_relations(eg.predicted, spans_key, symmetric_relations, mapper, scored=True),
    )


def _order(items: Iterable[Any]) -> List[Any]:
    """Items in document order, for a deterministic matching."""
    return sorted(items, key=lambda it: (_start(it), repr(it.key)))


def _start(item: Item) -> Tuple[int, int]:
    return (item.start, item.end) if isinstance(item, Entity) else (item.head.start, item.tail.start)


def _pair(
    errors: List[ErrorItem],
    kind: str,
    bucket: str,
    doc: int,
    false_pos: List[Any],
    false_neg: List[Any],
    paired_fp: Set[Key],
    paired_fn: Set[Key],
    match: Any,
) -> None:
    """Pair each unpaired false positive with the unpaired false negative for
    which ``match(fp, fn)`` gives the highest value (None: no match; ties:
    the earlier one)."""
    for fp in false_pos:
        if fp.key in paired_fp:
            continue
        best, best_value = None, None
        for fn in false_neg:
            if fn.key in paired_fn:
                continue
            value = match(fp, fn)
            if value is not None and (best_value is None or value > best_value):
                best, best_value = fn, value
        if best is not None:
            paired_fp.add(fp.key)
            paired_fn.add(best.key)
            errors.append(ErrorItem(kind, bucket, doc, gold=best, predicted=fp))


def _errors(
    kind: str,
    doc: int,
    gold: Dict[Key, Any],
    pred: Dict[Key, Any],
    pairings: Iterable[Tuple[str, Callable[[Any, Any], Optional[int]]]],
    *,
    spurious: Callable[[Any], str],
    missed: Callable[[Any], str],
) -> List[ErrorItem]:
    """Put each false positive and false negative of a doc in one bucket:
    first the pairs of one of each, bucket by bucket in the order of
    ``pairings`` (bucket, match: as ``_pair``), then the unpaired false
    positives in the bucket ``spurious(item)`` names and the unpaired false
    negatives in ``missed(item)``'s."""
    false_pos = _order(item for key, item in pred.items() if key not in gold)
    false_neg = _order(item for key, item in gold.items() if key not in pred)
    errors: List[ErrorItem] = []
    paired_fp: Set[Key] = set()
    paired_fn: Set[Key] = set()
    for bucket, match in pairings:
        _pair(errors, kind, bucket, doc, false_pos, false_neg, paired_fp, paired_fn, match)
    errors.extend(ErrorItem(kind, spurious(p), doc, predicted=p) for p in false_pos if p.key not in paired_fp)
    errors.extend(ErrorItem(kind, missed(g), doc, gold=g) for g in false_neg if g.key not in paired_fn)
    return errors


def entity_errors(doc: int, items: DocItems) -> List[ErrorItem]:
    """The entity errors of one doc, each false positive and false negative in
    exactly one :class:`ErrorItem`.

    doc (int): The doc's index. items (DocItems): Its entities.
    RETURNS (List[ErrorItem]): The errors, bucket by bucket.
    """

    def same_bounds(p: Entity, g: Entity) -> Optional[int]:
        return 0 if p.key[:2] == g.key[:2] else None

    def same_type(p: Entity, g: Entity) -> Optional[int]:
        return p.overlap(g) or None if p.label == g.label else None

    def overlapping(p: Entity, g: Entity) -> Optional[int]:
        return p.overlap(g) or None

    return _errors(
        "entities",
        doc,
        items.gold_entities,
        items.pred_entities,
        zip(ENTITY_PAIRS, (same_bounds, same_type, overlapping)),
        spurious=lambda p: "spurious",
        missed=lambda g: "missed",
    )


def relation_errors(doc: int, items: DocItems) -> List[ErrorItem]:
    """The relation errors (strict mode) of one doc, each false positive and
    false negative in exactly one :class:`ErrorItem`.

    doc (int): The doc's index. items (DocItems): Its entities and relations.
    RETURNS (List[ErrorItem]): The errors, bucket by bucket.
    """

    def same_entities(p: Relation, g: Relation) -> Optional[int]:
        return 0 if p.key[:6] == g.key[:6] else None

    def reversed_(p: Relation, g: Relation) -> Optional[int]:
        return 0 if p.label == g.label and p.key[:3] == g.key[3:6] and p.key[3:6] == g.key[:3] else None

    def near_entities(p: Relation, g: Relation) -> Optional[int]:
        if p.label != g.label:
            return None
        head, tail = p.head.overlap(g.head), p.tail.overlap(g.tail)
        return head + tail if head and tail else None

    def spurious(p: Relation) -> str:
        correct = p.key[:3] in items.gold_entities and p.key[3:6] in items.gold_entities
        return "spurious_correct_entities" if correct else "spurious_entity"

    def missed(g: Relation) -> str:
        found = g.key[:3] in items.pred_entities and g.key[3:6] in items.pred_entities
        return "missed_entities_found" if found else "missed_entity"

    return _errors(
        "relations",
        doc,
        items.gold_relations,
        items.pred_relations,
        zip(RELATION_PAIRS, (same_entities, reversed_, near_entities)),
        spurious=spurious,
        missed=missed,
    )
