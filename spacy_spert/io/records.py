"""The record: a processed doc's entities and relations as one JSON-safe
object, the schema of ``predict``'s JSONL lines, of the ``serve`` API's
answers, of the Ray engine's output and of what ``render`` reads. It is
defined here only: :func:`doc_to_record` writes it, :func:`output_record`
adds a JSONL line's carried fields, and :func:`check_record` checks one that
was read back (the pydantic models of ``spacy_spert.apps.serve.schema`` only
document it for OpenAPI)."""

from typing import Any, Dict, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from ..relations import RELATIONS_ATTR, EntityIndex

__all__ = [
    "ENTITY_FIELDS",
    "FIELDS_KEY",
    "RECORD_FIELDS",
    "RELATION_FIELDS",
    "check_record",
    "doc_to_record",
    "output_record",
    "spert_spans_key",
]

# The fields of a record, of one of its entities and of one of its relations, in the order they are written.
RECORD_FIELDS = ("text", "entities", "relations")
ENTITY_FIELDS = ("start", "end", "token_start", "token_end", "label", "score", "text")
RELATION_FIELDS = ("head", "tail", "label", "score")
# The key of doc.user_data that holds the carried input fields in .spacy output.
FIELDS_KEY = "input_fields"


def spert_spans_key(nlp: Language, default: str = "sc") -> str:
    """The span group the pipeline's first ``spert`` component writes.

    nlp (Language): The pipeline.
    default (str): The key when the pipeline has no ``spert`` component.
    RETURNS (str): The spans key.
    """
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == "spert":
            return nlp.get_pipe_config(name).get("spans_key", default)
    return default


def doc_to_record(doc: Doc, spans_key: str = "sc") -> Dict[str, Any]:
    """The entities and relations of a processed doc as one JSON-safe record:
    the schema of ``predict``'s JSONL output (there with the input's other
    fields added), meant to be the same wherever predictions leave Python::

        {"text": "Anna Lee works for Acme in Oslo .",
         "entities": [
           {"start": 0, "end": 8, "token_start": 0, "token_end": 2,
            "label": "Peop", "score": 0.97, "text": "Anna Lee"},
           {"start": 19, "end": 23, "token_start": 4, "token_end": 5,
            "label": "Org", "score": 0.91, "text": "Acme"}],
         "relations": [
           {"head": 0, "tail": 1, "label": "Work_For", "score": 0.88}]}

    ``entities[i]`` is ``doc.spans[spans_key][i]``, in the span group's order:
    ``start``/``end`` are character offsets into ``text``, ``token_start``/
    ``token_end`` token offsets (both with an exclusive end), ``score`` the
    entity's score from ``attrs["scores"]`` (null when the span group has no
    scores, e.g. gold data). ``relations`` follow ``doc._.relations``:
    ``head`` and ``tail`` are indices into ``entities``, resolved as
    :class:`~spacy_spert.relations.EntityIndex` does (same boundaries and, if
    the relation records it, the same entity type). A relation argument that
    is no entity of the span group (the ``spert`` component never writes one;
    gold or edited docs may have them) is appended to ``entities`` once, with
    the relation's ``head_label``/``tail_label`` (or "") and score null, so
    ``head``/``tail`` are always valid indices. Scores are floats (SpERT:
    probabilities; SpERT.MT: raw class scores).

    doc (Doc): A doc processed by a pipeline with ``spert`` (or gold data).
    spans_key (str): The span group of the entities.
    RETURNS (Dict[str, Any]): {"text", "entities", "relations"}.
    """
    group = doc.spans.get(spans_key, [])
    scores = group.attrs.get("scores") if len(group) else None
    if scores is not None and len(scores) != len(group):
        scores = None
    entities: List[Dict[str, Any]] = []
    index: EntityIndex[int] = EntityIndex()

    def add(start: int, end: int, label: str, score: Optional[float]) -> int:
        span = doc[start:end]
        index.add(start, end, label, len(entities))
        entities.append(
            {
                "start": span.start_char,
                "end": span.end_char,
                "token_start": start,
                "token_end": end,
                "label": label,
                "score": score,
                "text": span.text,
            }
        )
        return len(entities) - 1

    for i, span in enumerate(group):
        add(span.start, span.end, span.label_, float(scores[i]) if scores is not None else None)

    def endpoint(rel: Dict[str, Any], side: str) -> int:
        found = index.endpoint(rel, side)
        if found is None:
            found = add(rel[f"{side}_start"], rel[f"{side}_end"], rel.get(f"{side}_label") or "", None)
        return found

    relations = [
        {
            "head": endpoint(rel, "head"),
            "tail": endpoint(rel, "tail"),
            "label": rel["label"],
            "score": float(rel.get("score", 1.0)),
        }
        for rel in doc._.get(RELATIONS_ATTR)
    ]
    return {"text": doc.text, "entities": entities, "relations": relations}


def output_record(doc: Doc, fields: Dict[str, Any], spans_key: str = "sc", text_key: str = "text") -> Dict[str, Any]:
    """One line of the JSONL output (and one answer of the ``serve`` API):
    the input's fields, then the text under ``text_key`` and the entities and
    relations of :func:`doc_to_record` (input fields with those names are
    replaced).

    doc (Doc): The processed doc. fields (Dict[str, Any]): The input's fields.
    spans_key (str): The span group of the entities. text_key (str): The text's field.
    RETURNS (Dict[str, Any]): The JSON-safe line.
    """
    record = doc_to_record(doc, spans_key)
    line = dict(fields)
    line[text_key] = record["text"]
    line["entities"], line["relations"] = record["entities"], record["relations"]
    return line


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_score(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_record(record: Any) -> None:
    """Raise a ValueError naming the field if ``record`` is not a record as
    :func:`doc_to_record` writes it: ``"text"`` a
    string; ``"entities"`` a list of objects with ``start``/``end`` (character
    offsets, exclusive end, within the text), ``label`` (string) and
    ``score`` (number or null); ``"relations"`` a list of objects with
    ``head``/``tail`` (indices into ``entities``), ``label`` and ``score``.
    Other fields are allowed.

    record (Any): The value to check.
    """
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise ValueError("field 'text' must be a string" if "text" in record else "no field 'text'")
    for name in ("entities", "relations"):
        if name not in record:
            raise ValueError(f"no field '{name}' (a record of predict's output has 'text', 'entities' and 'relations')")
        if not isinstance(record[name], list):
            raise ValueError(f"field '{name}' must be a list")
    for where, ent in _items(record, "entities", ("start", "end")):
        if not (_is_int(ent["start"]) and _is_int(ent["end"]) and 0 <= ent["start"] < ent["end"] <= len(text)):
            raise ValueError(
                f"{where}: 'start'/'end' = {ent['start']!r}/{ent['end']!r} is not a span of a text "
                f"of {len(text)} characters"
            )
    n = len(record["entities"])
    for where, rel in _items(record, "relations", ("head", "tail")):
        for key in ("head", "tail"):
            if not (_is_int(rel[key]) and 0 <= rel[key] < n):
                raise ValueError(f"{where}: '{key}' = {rel[key]!r} is not an index into 'entities' ({n} entities)")


def _items(record: Dict[str, Any], name: str, keys: Tuple[str, str]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """Yield (where, item) for the items of record[name] (a list), after
    checking that each is an object with ``keys`` and a ``label`` string, and
    that its ``score`` is a number or null."""
    for i, item in enumerate(record[name]):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object")
        for key in (*keys, "label"):
            if key not in item:
                raise ValueError(f"{where}: no field '{key}'")
        if not isinstance(item["label"], str):
            raise ValueError(f"{where}: 'label' must be a string")
        if not _is_score(item.get("score")):
            raise ValueError(f"{where}: 'score' must be a number or null")
        yield where, item
