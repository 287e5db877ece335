"""The relation data type: what ``doc._.relations`` holds and how to read it.

A relation is a plain dict, so that it survives ``Doc.to_bytes``, ``DocBin``
(with ``store_user_data=True``), ``doc.to_json`` and ``nlp.pipe(n_process=2)``:

    {"head_start": 0, "head_end": 2, "tail_start": 4, "tail_end": 6,
     "label": "Work_For", "score": 0.93,
     "head_label": "Peop", "tail_label": "Org"}

Offsets are token offsets with an exclusive end. ``score`` is a Python float
(1.0 on gold data). ``head_label`` and ``tail_label`` are the entity types of
the two spans; they are optional on input (gold data written by hand may leave
them out) and always written by the ``spert`` component and the converter.

Serialization turns lists into tuples (DocBin) or tuples into lists
(multiprocessing), so read ``doc._.relations`` as any sequence and assign a new
list rather than mutating it in place.
"""

from typing import Any, Dict, Generic, Iterable, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

from spacy.tokens import Doc, Span

T = TypeVar("T")

RELATIONS_ATTR = "relations"
REQUIRED_KEYS = ("head_start", "head_end", "tail_start", "tail_end", "label")


def install_extensions() -> None:
    """Register ``Doc._.relations`` (default: an empty list, copied per doc)."""
    if not Doc.has_extension(RELATIONS_ATTR):
        Doc.set_extension(RELATIONS_ATTR, default=[])


# The relation data type comes with its extension: whoever imports this module
# (the component, the readers, ``from spacy_spert import make_relation``) can
# read and write ``doc._.relations``. spaCy's own import of the package (the
# factory's entry point) does not reach this module.
install_extensions()


class RelationSpans(NamedTuple):
    """A relation with Span views of its two arguments."""

    head: Span
    tail: Span
    label: str
    score: float


def make_relation(
    head: Span,
    tail: Span,
    label: str,
    score: float = 1.0,
) -> Dict[str, Any]:
    """Build the dict stored in ``doc._.relations`` for a relation between two
    spans of the same doc.

    head (Span): The head (first argument) span. Its label is the head's entity type.
    tail (Span): The tail (second argument) span.
    label (str): The relation type.
    score (float): The confidence; 1.0 for gold relations.
    RETURNS (Dict[str, Any]): A JSON- and msgpack-safe relation dict.
    """
    if head.doc is not tail.doc:
        raise ValueError("The head and tail of a relation must be spans of the same Doc.")
    return {
        "head_start": int(head.start),
        "head_end": int(head.end),
        "tail_start": int(tail.start),
        "tail_end": int(tail.end),
        "label": str(label),
        "score": float(score),
        "head_label": head.label_,
        "tail_label": tail.label_,
    }


def validate_relation(doc: Doc, rel: Dict[str, Any], where: str = "") -> None:
    """Raise a ValueError naming the problem if ``rel`` is not a valid relation
    dict for ``doc``.

    doc (Doc): The doc the relation belongs to.
    rel (dict): The relation dict.
    where (str): A description of where the relation comes from, for the message.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(rel, dict):
        raise ValueError(f"{prefix}a relation must be a dict, got {type(rel).__name__}")
    for key in REQUIRED_KEYS:
        if key not in rel:
            raise ValueError(f"{prefix}relation is missing the field '{key}': {rel}")
    for side in ("head", "tail"):
        start, end = rel[f"{side}_start"], rel[f"{side}_end"]
        if not (isinstance(start, int) and isinstance(end, int)):
            raise ValueError(f"{prefix}'{side}_start'/'{side}_end' must be integers: {rel}")
        if not 0 <= start < end <= len(doc):
            raise ValueError(
                f"{prefix}'{side}_start'/'{side}_end' = {start}/{end} is not a span "
                f"of a doc with {len(doc)} tokens: {rel}"
            )


class EntityIndex(Generic[T]):
    """The entities of a doc by their boundaries, to resolve the endpoints of
    relations: an endpoint refers to the first entity with the same
    (start, end) and, when the relation records the endpoint's label
    (``head_label``/``tail_label``), the same label.

    Each entity carries a value of the caller's choice (a Span, an index into a
    list of entities, a label). Used wherever relations meet entities: gold
    reading in the component, ``get_relation_spans``, the scorer and the
    converter.
    """

    def __init__(self) -> None:
        self._by_bounds: Dict[Tuple[int, int], List[Tuple[str, T]]] = {}

    @classmethod
    def from_spans(cls, spans: Iterable[Span]) -> "EntityIndex[Span]":
        """An index whose values are the spans themselves."""
        index: EntityIndex[Span] = EntityIndex()
        for span in spans:
            index.add(span.start, span.end, span.label_, span)
        return index

    def add(self, start: int, end: int, label: str, value: T) -> None:
        """Add an entity. Entities added earlier win when several match."""
        self._by_bounds.setdefault((int(start), int(end)), []).append((label, value))

    def matches(self, start: int, end: int, label: Optional[str] = None) -> List[T]:
        """RETURNS (List[T]): The values of the entities with these boundaries
        (and this label, unless it is None), in the order they were added."""
        return [v for lab, v in self._by_bounds.get((int(start), int(end)), ()) if label is None or lab == label]

    def endpoint(self, rel: Dict[str, Any], side: str) -> Optional[T]:
        """The value of the entity that the ``side`` ("head" or "tail") of the
        relation dict ``rel`` refers to, or None if there is none."""
        found = self.matches(rel[f"{side}_start"], rel[f"{side}_end"], rel.get(f"{side}_label"))
        return found[0] if found else None


def get_relation_spans(doc: Doc, spans_key: Optional[str] = "sc") -> List[RelationSpans]:
    """Return the relations of a doc with Span views of their arguments.

    When ``spans_key`` names a span group that holds a span with the same
    boundaries (and, if the relation records it, the same label), that span is
    returned, so its label is the entity type; otherwise a new Span is made with
    the relation's ``head_label``/``tail_label`` (or no label).

    doc (Doc): A doc processed by ``spert`` (or with gold relations).
    spans_key (Optional[str]): The span group that holds the entities.
    RETURNS (List[RelationSpans]): (head, tail, label, score) tuples.
    """
    entities = EntityIndex.from_spans(doc.spans[spans_key] if spans_key is not None and spans_key in doc.spans else ())

    def view(rel: Dict[str, Any], side: str) -> Span:
        span = entities.endpoint(rel, side)
        if span is None:
            span = Span(doc, rel[f"{side}_start"], rel[f"{side}_end"], label=rel.get(f"{side}_label") or "")
        return span

    return [
        RelationSpans(view(rel, "head"), view(rel, "tail"), rel["label"], float(rel.get("score", 1.0)))
        for rel in doc._.get(RELATIONS_ATTR)
    ]


def relation_key(rel: Dict[str, Any]) -> tuple:
    """The identity of a relation without its score:
    (head_start, head_end, tail_start, tail_end, label)."""
    return tuple(rel[k] for k in REQUIRED_KEYS)


def canonical_order(relations: Iterable[Dict[str, Any]], symmetric_labels: Sequence[str]) -> List[Dict[str, Any]]:
    """Put relations of symmetric types in canonical order (the earlier span,
    by (start, end), as head) and drop duplicates, keeping the highest score.

    relations (Iterable[dict]): Relation dicts.
    symmetric_labels (Sequence[str]): The relation types that are symmetric.
    RETURNS (List[dict]): New relation dicts; the input is not modified.
    """
    symmetric = set(symmetric_labels)
    best: Dict[tuple, Dict[str, Any]] = {}
    for rel in relations:
        rel = dict(rel)
        if rel["label"] in symmetric and (rel["tail_start"], rel["tail_end"]) < (
            rel["head_start"],
            rel["head_end"],
        ):
            for field in ("start", "end", "label"):
                head, tail = rel.pop(f"head_{field}", None), rel.pop(f"tail_{field}", None)
                if tail is not None:
                    rel[f"head_{field}"] = tail
                if head is not None:
                    rel[f"tail_{field}"] = head
        key = relation_key(rel)
        if key not in best or rel.get("score", 1.0) > best[key].get("score", 1.0):
            best[key] = rel
    return list(best.values())
