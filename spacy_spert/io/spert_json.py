"""Convert SpERT JSON data to spaCy's binary ``.spacy`` format and back.

The SpERT JSON format (used by the CoNLL04, SciERC and ADE releases of
Eberts & Ulges 2020) is a JSON list with one object per sentence::

    {"tokens": ["John", "works", "for", "Acme", "."],
     "entities": [{"type": "Peop", "start": 0, "end": 1},
                  {"type": "Org", "start": 3, "end": 4}],
     "relations": [{"type": "Work_For", "head": 0, "tail": 1}],
     "orig_id": 5}

``start``/``end`` are token offsets with an exclusive end; ``head``/``tail``
are indices into the record's ``entities``. A types file describes the label
set::

    {"entities": {"Peop": {"short": "Peop", "verbose": "People"}, ...},
     "relations": {"Work_For": {"short": "Work", "verbose": "Work for",
                                "symmetric": false}, ...}}

A converted record becomes a ``Doc`` built from the gold tokens (without
whitespace information, so ``doc.has_unknown_spaces`` is True and spaCy's
``Corpus`` keeps the gold tokenization), with the entities in
``doc.spans[spans_key]`` and the relations in ``doc._.relations`` (see
:mod:`spacy_spert.relations`). Every problem in the input is reported as a
one-line :class:`ConversionError` that names the file, the record index and
the field.
"""

from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple

import spacy
from spacy.tokens import Doc, DocBin, Span, SpanGroup
from spacy.vocab import Vocab

from ..relations import RELATIONS_ATTR, EntityIndex, install_extensions, make_relation
from .files import check_output_path, write_atomic
from .validation import ConversionError, PathLike, is_int, json_type, load_json, show

__all__ = [
    "ConversionError",
    "SpertTypes",
    "convert_file",
    "docs_to_records",
    "read_docbin",
    "read_records",
    "read_types",
    "records_to_docs",
]


class SpertTypes(NamedTuple):
    """The label set of a SpERT types file.

    entities (List[str]): Entity type names, in file order.
    relations (List[str]): Relation type names, in file order.
    symmetric (List[str]): The relation types marked ``"symmetric": true``.
    """

    entities: List[str]
    relations: List[str]
    symmetric: List[str]


def read_types(path: PathLike) -> SpertTypes:
    """Read a SpERT types file.

    path (str / Path): A JSON file
        ``{"entities": {name: {...}}, "relations": {name: {..., "symmetric": bool}}}``.
        ``"symmetric"`` may be left out (meaning false).
    RETURNS (SpertTypes): The entity types, relation types and symmetric
        relation types, in file order.
    RAISES: OSError if the file cannot be read; ConversionError (naming the
        file and field) if it is not valid JSON or not of this structure.
    """
    source = str(path)
    data = load_json(path, source)
    if not isinstance(data, dict):
        raise ConversionError(
            source,
            f"a types file must be an object with 'entities' and 'relations', got {json_type(data)}",
        )
    names: Dict[str, List[str]] = {}
    symmetric: List[str] = []
    for kind in ("entities", "relations"):
        if kind not in data:
            raise ConversionError(source, "missing", field=kind)
        table = data[kind]
        if not isinstance(table, dict):
            raise ConversionError(
                source,
                f"must be an object mapping type names to objects, got {json_type(table)}",
                field=kind,
            )
        names[kind] = []
        for name, info in table.items():
            if not name.strip():
                raise ConversionError(source, "a type name must not be empty", field=f"{kind}.{name}")
            if not isinstance(info, dict):
                raise ConversionError(source, f"must be an object, got {json_type(info)}", field=f"{kind}.{name}")
            if kind == "relations":
                flag = info.get("symmetric", False)
                if not isinstance(flag, bool):
                    raise ConversionError(
                        source,
                        f"must be true or false, got {show(flag)}",
                        field=f"relations.{name}.symmetric",
                    )
                if flag:
                    symmetric.append(name)
            names[kind].append(name)
    return SpertTypes(names["entities"], names["relations"], symmetric)


def read_records(path: PathLike, source: Optional[str] = None) -> List[Any]:
    """Read a SpERT data file: a JSON list of records.

    path (str / Path): The JSON file.
    source (Optional[str]): The name used in error messages (default: the path as given).
    RETURNS (List[Any]): The records, unvalidated (see :func:`records_to_docs`).
    RAISES: OSError if the file cannot be read; ConversionError if it is not
        valid JSON or not a list.
    """
    source = str(path) if source is None else source
    data = load_json(path, source)
    if not isinstance(data, list):
        raise ConversionError(source, f"expected a JSON list of records, got {json_type(data)}")
    return data


def _check_record(
    record: Any, i: int, source: str, types: Optional[SpertTypes]
) -> Tuple[List[str], List[Tuple[int, int, str]], List[Tuple[int, int, str]], Optional[str]]:
    """Validate one record; return (tokens, entities, relations, orig_id) with
    entities as (start, end, type) and relations as (head, tail, type)."""

    def fail(problem: str, field: Optional[str] = None) -> ConversionError:
        return ConversionError(source, problem, record=i, field=field)

    def check_items(name: str, keys: Tuple[str, str, str], known: Optional[List[str]]):
        """Check record[name] is a list of objects with ``keys`` (the first
        one a type name, in ``known`` if given); yield (where, item)."""
        items = record[name]
        if not isinstance(items, list):
            raise fail(f"must be a list, got {json_type(items)}", name)
        kind = "entity" if name == "entities" else "relation"
        for k, item in enumerate(items):
            where = f"{name}[{k}]"
            if not isinstance(item, dict):
                expected = f"'{keys[0]}', '{keys[1]}' and '{keys[2]}'"
                raise fail(f"must be an object with {expected}, got {json_type(item)}", where)
            for key in keys:
                if key not in item:
                    raise fail("missing", f"{where}.{key}")
            label = item[keys[0]]
            if not isinstance(label, str) or not label.strip():
                raise fail(f"must be a non-empty string, got {show(label)}", f"{where}.type")
            if known is not None and label not in known:
                raise fail(
                    f"unknown {kind} type {show(label)} (the types file has: {', '.join(known)})",
                    f"{where}.type",
                )
            yield where, item

    if not isinstance(record, dict):
        raise fail(f"must be an object with 'tokens', 'entities' and 'relations', got {json_type(record)}")
    for key in ("tokens", "entities", "relations"):
        if key not in record:
            raise fail("missing (every record needs 'tokens', 'entities' and 'relations')", key)

    tokens = record["tokens"]
    if not isinstance(tokens, list):
        raise fail(f"must be a list of strings, got {json_type(tokens)}", "tokens")
    for k, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip():
            raise fail(f"a token must be a non-empty string, got {show(token)}", f"tokens[{k}]")

    checked_ents: List[Tuple[int, int, str]] = []
    known_ents = types.entities if types is not None else None
    for where, ent in check_items("entities", ("type", "start", "end"), known_ents):
        label, start, end = ent["type"], ent["start"], ent["end"]
        for key, value in (("start", start), ("end", end)):
            if not is_int(value):
                raise fail(f"must be an integer, got {show(value)}", f"{where}.{key}")
        if start < 0:
            raise fail(f"start ({start}) must not be negative", f"{where}.start")
        if end <= start:
            raise fail(f"end ({end}) must be greater than start ({start})", f"{where}.end")
        if end > len(tokens):
            raise fail(f"end ({end}) is past the end of the record ({len(tokens)} tokens)", f"{where}.end")
        checked_ents.append((start, end, label))

    checked_rels: List[Tuple[int, int, str]] = []
    known_rels = types.relations if types is not None else None
    for where, rel in check_items("relations", ("type", "head", "tail"), known_rels):
        label, head, tail = rel["type"], rel["head"], rel["tail"]
        for key, value in (("head", head), ("tail", tail)):
            if not is_int(value):
                raise fail(f"must be an integer index into 'entities', got {show(value)}", f"{where}.{key}")
            if not 0 <= value < len(checked_ents):
                raise fail(
                    f"entity index {value} does not exist (record has {len(checked_ents)} entities)",
                    f"{where}.{key}",
                )
        if head == tail:
            raise fail(
                f"head and tail are the same entity ({head}); a relation needs two entities",
                f"{where}.tail",
            )
        checked_rels.append((head, tail, label))

    orig_id = record.get("orig_id")
    if orig_id is not None:
        if not (isinstance(orig_id, str) or is_int(orig_id)):
            raise fail(f"must be a string or an integer, got {json_type(orig_id)}", "orig_id")
        orig_id = str(orig_id)
    return tokens, checked_ents, checked_rels, orig_id


def records_to_docs(
    records: Iterable[Any],
    vocab: Vocab,
    *,
    types: Optional[SpertTypes] = None,
    spans_key: str = "sc",
    source: str = "<input>",
) -> List[Doc]:
    """Convert SpERT records to Docs, validating every record.

    Each record becomes ``Doc(vocab, words=tokens)`` (no whitespace information,
    so ``doc.has_unknown_spaces`` is True). Its entities become a SpanGroup in
    ``doc.spans[spans_key]`` in record order, labelled with their types;
    overlapping entities and entities with the same boundaries are all kept.
    Its relations become a new list of dicts in ``doc._.relations`` built with
    :func:`spacy_spert.relations.make_relation` (score 1.0, head/tail labels =
    entity types), in record order; duplicates are kept. A record's
    ``orig_id`` (string or integer) is kept as a string in
    ``doc.user_data["orig_id"]``. An empty ``tokens`` list gives an empty Doc
    (spaCy's Corpus skips empty docs when training). Keys other than
    ``tokens``, ``entities``, ``relations`` and ``orig_id`` are ignored.

    records (Iterable): The records (e.g. the parsed JSON list of a SpERT file).
    vocab (Vocab): The vocab for the Docs, e.g. ``spacy.blank("en").vocab``.
    types (Optional[SpertTypes]): If given, entity and relation types not in it
        are errors. If None, the labels are whatever the data has.
    spans_key (str): The span group for the entities.
    source (str): The name of the input used in error messages.
    RETURNS (List[Doc]): One Doc per record, in order.
    RAISES: ConversionError naming ``source``, the record index and the field
        at the first problem found.
    """
    if not isinstance(spans_key, str) or not spans_key:
        raise ValueError(f"spans_key must be a non-empty string, got {spans_key!r}")
    if isinstance(records, (dict, str, bytes)):
        raise ConversionError(source, f"expected a list of records, got {json_type(records)}")
    install_extensions()
    docs = []
    for i, record in enumerate(records):
        tokens, ents, rels, orig_id = _check_record(record, i, source, types)
        doc = Doc(vocab, words=tokens)
        spans = [Span(doc, start, end, label=label) for start, end, label in ents]
        doc.spans[spans_key] = SpanGroup(doc, name=spans_key, spans=spans)
        doc._.set(
            RELATIONS_ATTR,
            [make_relation(spans[head], spans[tail], label, 1.0) for head, tail, label in rels],
        )
        if orig_id is not None:
            doc.user_data["orig_id"] = orig_id
        docs.append(doc)
    return docs


def docs_to_records(
    docs: Iterable[Doc], spans_key: str = "sc", *, include_scores: bool = False
) -> List[Dict[str, Any]]:
    """Convert Docs to SpERT JSON records, e.g. to export predictions.

    ``tokens`` are the token texts; ``entities`` are the spans of
    ``doc.spans[spans_key]`` (none if the group is missing) in order;
    ``relations`` come from ``doc._.relations`` in order, with ``head``/``tail``
    resolved to the first entity with the same boundaries and label (the
    relation's ``head_label``/``tail_label``; boundaries only if it has no
    label). A relation argument that is not in the span group is appended to
    ``entities``. ``orig_id`` is written from ``doc.user_data["orig_id"]`` if
    present. For docs made by :func:`records_to_docs` this gives back the
    original records (with ``orig_id`` as a string).

    docs (Iterable[Doc]): The docs.
    spans_key (str): The span group that holds the entities.
    include_scores (bool): Also write each relation's ``score``.
    RETURNS (List[Dict[str, Any]]): One JSON-serializable record per doc.
    RAISES: ValueError if a relation points at a span that is not in the span
        group and has no label to give the new entity.
    """
    return [_doc_to_record(d, doc, spans_key, include_scores) for d, doc in enumerate(docs)]


def _doc_to_record(d: int, doc: Doc, spans_key: str, include_scores: bool) -> Dict[str, Any]:
    """The SpERT JSON record of one doc (see :func:`docs_to_records`); ``d`` is
    its index, for messages."""
    entities: List[Dict[str, Any]] = []
    index: EntityIndex[int] = EntityIndex()  # (start, end, label) -> position in entities

    def add_entity(start: int, end: int, label: str) -> int:
        index.add(start, end, label, len(entities))
        entities.append({"type": label, "start": start, "end": end})
        return len(entities) - 1

    if spans_key in doc.spans:
        for span in doc.spans[spans_key]:
            add_entity(int(span.start), int(span.end), span.label_)

    def resolve(rel: Dict[str, Any], side: str) -> int:
        start, end = int(rel[f"{side}_start"]), int(rel[f"{side}_end"])
        label = rel.get(f"{side}_label") or None
        found = index.matches(start, end, label)
        if found:
            return found[0]
        if label is None:
            raise ValueError(
                f"doc {d}: the {side} of relation {rel} is not in doc.spans[{spans_key!r}] "
                f"and has no '{side}_label' to make it an entity"
            )
        return add_entity(start, end, label)

    relations = []
    for rel in doc._.get(RELATIONS_ATTR) or ():
        out: Dict[str, Any] = {
            "type": rel["label"],
            "head": resolve(rel, "head"),
            "tail": resolve(rel, "tail"),
        }
        if include_scores:
            out["score"] = float(rel.get("score", 1.0))
        relations.append(out)
    record: Dict[str, Any] = {
        "tokens": [token.text for token in doc],
        "entities": entities,
        "relations": relations,
    }
    if doc.user_data.get("orig_id") is not None:
        record["orig_id"] = doc.user_data["orig_id"]
    return record


def convert_file(
    input_path: PathLike,
    output_path: PathLike,
    *,
    types_path: Optional[PathLike] = None,
    spans_key: str = "sc",
    lang: str = "en",
) -> int:
    """Convert a SpERT JSON file to a ``.spacy`` DocBin (with user data, so
    ``doc._.relations`` and ``orig_id`` are kept).

    All records are read and converted (see :func:`records_to_docs`) before
    anything is written; the DocBin is then written to a temporary file in the
    output directory (created if missing) and renamed into place. On any error
    no output file, partial or otherwise, is left (an existing output file is
    left unchanged).

    input_path (str / Path): The SpERT JSON file (a list of records).
    output_path (str / Path): The ``.spacy`` file to write.
    types_path (Optional[str / Path]): A SpERT types file; if given, entity and
        relation types not in it are errors.
    spans_key (str): The span group for the entities.
    lang (str): The language code for ``spacy.blank(lang).vocab``.
    RETURNS (int): The number of docs written.
    RAISES: ValueError if the output is the input or the types file (before
        anything is read); ConversionError (a ValueError) for invalid data, naming the file,
        record and field; ValueError for an unknown ``lang``; OSError if a file
        cannot be read or written.
    """
    check_output_path(output_path, input_path, types_path)
    types = read_types(types_path) if types_path is not None else None
    source = str(input_path)
    records = read_records(input_path, source)
    try:
        nlp = spacy.blank(lang)
    except ImportError:
        raise ValueError(f"unknown language code {lang!r} (spaCy has no language class for it)") from None
    docs = records_to_docs(records, nlp.vocab, types=types, spans_key=spans_key, source=source)
    doc_bin = DocBin(store_user_data=True, docs=docs)
    write_atomic(doc_bin.to_bytes(), Path(output_path))
    return len(docs)


def read_docbin(path: PathLike, vocab: Optional[Vocab] = None) -> List[Doc]:
    """Read the Docs of a ``.spacy`` file (e.g. one written by :func:`convert_file`).

    path (str / Path): The ``.spacy`` file.
    vocab (Optional[Vocab]): The vocab for the docs (default: ``spacy.blank("en").vocab``).
    RETURNS (List[Doc]): The docs, with span groups and user data.
    """
    install_extensions()
    if vocab is None:
        vocab = spacy.blank("en").vocab
    return list(DocBin().from_disk(Path(path)).get_docs(vocab))
