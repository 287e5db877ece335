"""Import entity and relation annotations from annotation tools to ``.spacy``.

Three formats, next to the SpERT JSON of :mod:`spacy_spert.io.spert_json`:

``prodigy``
    A JSONL file as written by ``prodigy db-out`` for the ``rel.manual``
    recipe: one task a line with ``text``, ``tokens`` (``{text, start, end,
    id, ws}``), ``spans`` (``{start, end, token_start, token_end, label}``,
    character offsets with an exclusive ``end``, token offsets with an
    inclusive ``token_end``), ``relations`` (``{head, child, head_span,
    child_span, label}``) and ``answer``. Only ``"accept"`` answers are
    imported; ``"reject"`` and ``"ignore"`` are counted. The Doc is built
    from the task's own ``tokens`` (Prodigy tokenized with the annotator's
    pipeline), so ``--lang``/``--model`` only matter for sentence splitting.
    A relation's arguments are its ``head_span``/``child_span`` (matched to
    ``spans`` by character offsets and label); a relation without them is
    matched by its token indices ``head``/``child`` to the span that ends on
    that token (Prodigy's convention), else to a span that contains it.
``brat``
    A folder (searched recursively) of ``NAME.txt`` + ``NAME.ann`` pairs in
    brat's standoff format, or one ``.ann`` file. ``T`` lines
    (``T1<TAB>Label START END<TAB>text``) are entities, ``R`` lines
    (``R1<TAB>Label Arg1:T1 Arg2:T2``) relations, the first argument the head.
    Each ``T`` line's text must equal the ``.txt`` slice. Discontinuous
    entities (``START END;START END``), events (``E``) and their trigger
    ``T`` lines, attributes (``A``/``M``), normalizations (``N``),
    equivalences (``*``) and notes (``#``) cannot be represented: they are
    counted in the report, as are relations with such an argument. A
    ``.txt`` without a ``.ann`` is not annotated: skipped and counted.
``label-studio``
    Label Studio's JSON export: a list of tasks with ``data`` (the text under
    ``text_key``, default ``"text"``) and ``annotations``. The first
    annotation not ``was_cancelled`` is imported; cancelled and further ones
    are counted, tasks with none are skipped and counted. Its ``result``
    items of type ``"labels"`` are entities (one per label of the region;
    ``value.text``, if present, must equal the text slice), items of type
    ``"relation"`` relations from ``from_id`` to ``to_id`` with each of their
    ``labels`` (``direction`` ``"left"`` swaps head and tail; ``"bi"``, an
    undirected relation, takes the entity that comes first in the text as
    head, the canonical order of :func:`spacy_spert.relations.canonical_order`).
    A relation without labels is dropped and counted (Label Studio lets
    annotators draw unlabelled arrows); a relation from or to a region of
    several labels uses the region's first label. Other result types are
    counted.

Policies shared by the three formats:

* Character offsets are mapped onto tokens: the tokenizer of
  ``spacy.blank(lang)`` or of a given pipeline (Prodigy: the task's tokens).
  Whitespace at the ends of an annotation is trimmed (counted). An
  annotation that does not start and end on token boundaries is expanded to
  the tokens it touches (``doc.char_span(..., alignment_mode="expand")``),
  counted with its first examples in the report; with ``strict=True`` it is
  an error instead.
* Documents are kept whole, or with ``split_sentences=True`` split into one
  Doc per sentence, by the pipeline's own sentence component (``senter``,
  ``parser``, ``sentencizer``: the first enabled one that sets sentence
  starts, run with the components before it) or else spaCy's
  ``sentencizer``. A sentence boundary inside an entity is removed (the
  sentences stay together). A relation whose arguments end up in different
  sentences is dropped from both and counted. Whitespace tokens at the start
  of a sentence (a blank line) go with the sentence before.
* Empty or whitespace-only texts are skipped and counted.
* The output Docs hold only tokens and whitespace (no tags or parses from a
  pipeline), the entities in ``doc.spans[spans_key]``, the relations in
  ``doc._.relations`` (:func:`~spacy_spert.relations.make_relation`, score
  1.0) and an ``orig_id`` in ``doc.user_data`` (the Prodigy line number, the
  brat file name without extension, the Label Studio task id), as
  :mod:`spacy_spert.io.spert_json` writes them.
* Malformed input raises a one-line :class:`~spacy_spert.io.spert_json.ConversionError`
  naming the file, the record (JSON) or line (JSONL, ``.ann``) and the
  field; nothing is written then.
"""
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import spacy
from spacy.language import Language
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc, DocBin, Span, SpanGroup

from ..files import write_atomic
from ..spert_json import SpertTypes, read_types
from ..validation import ConversionError, PathLike, is_int, json_type, load_json, show
from ...relations import RELATIONS_ATTR, install_extensions, make_relation

__all__ = ["FORMATS", "ImportReport", "import_docs", "import_file"]

FORMATS = ("prodigy", "brat", "label-studio")
N_EXAMPLES = 3


@dataclass
class ImportReport:
    """What an import wrote and what it left out.

    docs, entities, relations (int): What was written.
    trimmed (int): Entities with whitespace at their ends, trimmed.
    expanded (int): Entities not on token boundaries, expanded to whole tokens.
    examples (List[str]): The first expanded entities, as
        ``"FILE, record N: 'text' -> 'token text'"``.
    skipped (Counter): Records (or annotations) not imported by design, by reason.
    dropped (Counter): Annotations that cannot be represented, by kind.
    """

    docs: int = 0
    entities: int = 0
    relations: int = 0
    trimmed: int = 0
    expanded: int = 0
    examples: List[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

    def messages(self) -> List[Tuple[str, str]]:
        """The summary as (level, text) lines; level is a wasabi ``msg``
        method ("good", "info", "warn") or "text" for a data line."""
        lines = [("good", f"Imported docs: {self.docs}, entities: {self.entities}, relations: {self.relations}")]
        if self.trimmed:
            lines.append(("info", f"{self.trimmed} entities had whitespace at their ends, trimmed"))
        if self.expanded:
            lines.append(("warn", f"{self.expanded} entities not on token boundaries, expanded to whole tokens, e.g."))
            lines.extend(("text", f"  {example}") for example in self.examples)
        lines.extend(("info", f"skipped: {n} {what}") for what, n in sorted(self.skipped.items()))
        lines.extend(("warn", f"left out: {n} {what}") for what, n in sorted(self.dropped.items()))
        return lines


class _Entity(NamedTuple):
    start: int  # character offsets, exclusive end
    end: int
    label: str
    field: str  # the field of the offsets, for messages
    label_field: str  # the field of the label
    line: Optional[int] = None  # the line, where the item has one per annotation (brat)
    tokens: Optional[Tuple[int, int]] = None  # token offsets the input claims (Prodigy), exclusive end


class _Relation(NamedTuple):
    head: int  # index into the item's entities
    tail: int
    label: str
    label_field: str
    line: Optional[int] = None


@dataclass
class _Item:
    """One annotated text, read from any of the formats."""

    source: str
    where: Dict[str, int]  # {"record": i} or {"line": n}, for ConversionError
    text: str
    entities: List[_Entity]
    relations: List[_Relation]
    orig_id: str
    doc: Optional[Doc] = None  # tokens given by the input (Prodigy); else the tokenizer's

    def error(self, problem: str, field: Optional[str] = None, line: Optional[int] = None) -> ConversionError:
        return ConversionError(self.source, problem, field=field, **({"line": line} if line else self.where))

    def place(self, line: Optional[int] = None) -> str:
        where = {"line": line} if line else self.where
        return ", ".join([self.source] + [f"{key} {value}" for key, value in where.items()])


Fail = Callable[..., ConversionError]

_KINDS: Dict[str, Tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", is_int),
    "label": ("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip())),
    "str": ("a string", lambda v: isinstance(v, str)),
    "word": ("a non-empty string", lambda v: isinstance(v, str) and v != ""),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "object": ("an object", lambda v: isinstance(v, dict)),
}


def _get(obj: Dict[str, Any], key: str, kind: str, fail: Fail, where: str = "", **default: Any) -> Any:
    """``obj[key]``, checked to be of ``kind`` (see _KINDS); ``default=...``
    makes the key optional (a null value counts as missing then)."""
    name = f"{where}.{key}" if where else key
    value = obj.get(key)
    if value is None and "default" in default:
        return default["default"]
    if key not in obj:
        raise fail("missing", name)
    expected, check = _KINDS[kind]
    if not check(value):
        raise fail(f"must be {expected}, got {show(value)}", name)
    return value


# ---------------------------------------------------------------------------
# Prodigy


def _read_prodigy(path: Path, source: str, report: ImportReport, vocab) -> Iterator[_Item]:
    data = path.read_bytes()
    try:
        lines = data.decode("utf-8-sig").split("\n")
    except UnicodeDecodeError as e:
        raise ConversionError(source, f"not valid UTF-8 text: {e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue

        def fail(problem: str, name: Optional[str] = None) -> ConversionError:
            return ConversionError(source, problem, line=n, field=name)

        try:
            task = json.loads(line)
        except json.JSONDecodeError as e:
            raise fail(f"not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(task, dict):
            raise fail(f"must be an object (a Prodigy task), got {json_type(task)}")
        answer = _get(task, "answer", "str", fail)
        if answer not in ("accept", "reject", "ignore"):
            raise fail(f"must be \"accept\", \"reject\" or \"ignore\", got {show(answer)}", "answer")
        if answer != "accept":
            report.skipped[f"'{answer}' answers"] += 1
            continue
        text = _get(task, "text", "str", fail)
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        item = _Item(source, {"line": n}, text, [], [], str(n), _prodigy_doc(task, text, fail, vocab))
        span_tokens = []
        for k, span in enumerate(_get(task, "spans", "list", fail, default=[])):
            where = f"spans[{k}]"
            if not isinstance(span, dict):
                raise fail(f"must be an object with 'start', 'end' and 'label', got {json_type(span)}", where)
            start, end = (_get(span, key, "int", fail, where) for key in ("start", "end"))
            first = _get(span, "token_start", "int", fail, where, default=None)
            last = _get(span, "token_end", "int", fail, where, default=None)
            tokens = (first, last + 1) if first is not None and last is not None else None
            label = _get(span, "label", "label", fail, where)
            item.entities.append(_Entity(start, end, label, where, f"{where}.label", tokens=tokens))
            span_tokens.append(tokens)
        for k, rel in enumerate(_get(task, "relations", "list", fail, default=[])):
            where = f"relations[{k}]"
            if not isinstance(rel, dict):
                raise fail(f"must be an object with 'head', 'child' and 'label', got {json_type(rel)}", where)
            label = _get(rel, "label", "label", fail, where)
            ends = [_prodigy_endpoint(rel, side, item, span_tokens, fail, where) for side in ("head", "child")]
            if None in ends:
                report.dropped["relations with an argument that is not a labelled span"] += 1
            elif ends[0] == ends[1]:
                raise fail("head and child are the same span; a relation needs two entities", where)
            else:
                item.relations.append(_Relation(ends[0], ends[1], label, f"{where}.label"))
        yield item


def _prodigy_doc(task: Dict[str, Any], text: str, fail: Fail, vocab) -> Doc:
    """The Doc of a task's ``tokens``, checked against its ``text``."""
    tokens = _get(task, "tokens", "list", fail)
    for k, token in enumerate(tokens):
        if not isinstance(token, dict):
            raise fail(f"must be an object with 'text', 'start', 'end' and 'ws', got {json_type(token)}",
                       f"tokens[{k}]")
    words = [_get(t, "text", "word", fail, f"tokens[{k}]") for k, t in enumerate(tokens)]
    spaces = [_get(t, "ws", "bool", fail, f"tokens[{k}]") for k, t in enumerate(tokens)]
    doc = Doc(vocab, words=words, spaces=spaces)
    for k, (token, given) in enumerate(zip(doc, tokens)):
        start = _get(given, "start", "int", fail, f"tokens[{k}]")
        if start != token.idx or text[start : start + len(token)] != token.text:
            raise fail(
                f"token {show(token.text)} is at character {token.idx} of the text its tokens and 'ws' make, "
                f"and the text has {show(text[start : start + len(token)])} at 'start' {start}",
                f"tokens[{k}].start",
            )
    if doc.text != text:
        raise fail(f"the tokens and their 'ws' make {show(doc.text)}, not the task's 'text'", "tokens")
    return doc


def _prodigy_endpoint(rel: Dict[str, Any], side: str, item: _Item, span_tokens: List[Any], fail: Fail,
                      where: str) -> Optional[int]:
    """The index in ``item.entities`` of a relation's head or child, or None
    if it is no labelled span of the task."""
    span = _get(rel, f"{side}_span", "object", fail, where, default=None)
    if span is not None:
        start, end = (_get(span, key, "int", fail, f"{where}.{side}_span") for key in ("start", "end"))
        label = span.get("label")
        found = [i for i, e in enumerate(item.entities)
                 if (e.start, e.end) == (start, end) and label in (None, e.label)]
    else:
        token = _get(rel, side, "int", fail, where)
        if not 0 <= token < len(item.doc):
            raise fail(f"token {token} does not exist (the task has {len(item.doc)} tokens)", f"{where}.{side}")
        known = [(i, t) for i, t in enumerate(span_tokens) if t is not None]
        found = [i for i, (_first, end) in known if end - 1 == token] or [
            i for i, (first, end) in known if first <= token < end
        ]
    return found[0] if found else None


# ---------------------------------------------------------------------------
# brat


_BRAT_KINDS = {"A": "attributes", "M": "attributes", "N": "normalizations", "*": "equivalences", "#": "notes"}


def _brat_files(path: Path, report: ImportReport) -> List[Path]:
    if path.is_file():
        if path.suffix != ".ann":
            raise ConversionError(str(path), "a brat input is a folder of .txt and .ann files or one .ann file")
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    unannotated = sum(1 for txt in path.rglob("*.txt") if not txt.with_suffix(".ann").exists())
    if unannotated:
        report.skipped["texts without a .ann file"] += unannotated
    return sorted(path.rglob("*.ann"))


def _read_brat(path: Path, report: ImportReport) -> Iterator[_Item]:
    for ann_path in _brat_files(path, report):
        ann_source = str(ann_path)
        txt_path = ann_path.with_suffix(".txt")
        if not txt_path.exists():
            raise ConversionError(ann_source, f"no text file {txt_path.name} next to it")
        try:
            # newline="" semantics: brat counts "\r\n" as two characters.
            text = txt_path.read_bytes().decode("utf-8")
            lines = [line.rstrip("\r") for line in ann_path.read_bytes().decode("utf-8").split("\n")]
        except UnicodeDecodeError as e:
            raise ConversionError(ann_source, f"{txt_path.name} or {ann_path.name} is not valid UTF-8 text: {e}") from None
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        name = ann_path.relative_to(path).with_suffix("").as_posix() if path.is_dir() else ann_path.stem
        item = _Item(ann_source, {}, text, [], [], name)
        yield _brat_item(item, lines, report)


def _brat_item(item: _Item, lines: List[str], report: ImportReport) -> _Item:
    """Fill ``item`` from the lines of its .ann file."""
    entities: Dict[str, Optional[int]] = {}  # T id -> index in item.entities, None if not imported
    others = set()  # ids of events and of annotations that are not entities
    triggers = set()
    relations = []
    for n, line in enumerate(lines, 1):
        def fail(problem: str, name: Optional[str] = None, n=n) -> ConversionError:
            return ConversionError(item.source, problem, line=n, field=name)

        if not line.strip():
            continue
        parts = line.split("\t")
        ann_id, kind = parts[0], parts[0][:1]
        if ann_id in entities or ann_id in others:
            raise fail(f"the id {ann_id} is used twice", "id")
        if kind == "T":
            if len(parts) < 3:
                raise fail("a T line is ID<TAB>TYPE START END<TAB>TEXT", "text")
            entities[ann_id] = _brat_entity(item, parts, n, fail, report)
        elif kind == "R":
            args = parts[1].split() if len(parts) > 1 else []
            if len(args) != 3 or not all(":" in arg for arg in args[1:]):
                raise fail(f"a relation is TYPE Arg1:ID Arg2:ID, got {show(parts[1] if len(parts) > 1 else '')}",
                           "arguments")
            relations.append((n, args[0], [arg.split(":", 1)[1] for arg in args[1:]]))
            others.add(ann_id)
        elif kind == "E":
            report.dropped["events"] += 1
            others.add(ann_id)
            trigger = parts[1].split()[0].split(":", 1) if len(parts) > 1 and parts[1].strip() else []
            if len(trigger) == 2:
                triggers.add(trigger[1])
        elif kind in _BRAT_KINDS:
            report.dropped[_BRAT_KINDS[kind]] += 1
            if kind != "*":
                others.add(ann_id)
        else:
            raise fail(f"unknown annotation {show(ann_id)} (brat lines start with T, R, E, A, M, N, * or #)", "id")
    for trigger in sorted(triggers):
        if entities.get(trigger) is not None:
            report.dropped["event triggers"] += 1
            entities[trigger] = None
    kept = {ann_id: index for ann_id, index in entities.items() if index is not None}
    item.entities = [item.entities[index] for index in kept.values()]
    kept = {ann_id: k for k, ann_id in enumerate(kept)}
    for n, label, args in relations:
        ends = []
        for arg in args:
            if arg not in entities and arg not in others:
                raise item.error(f"{arg} is not defined in this file", "arguments", line=n)
            ends.append(kept.get(arg))
        if None in ends:
            report.dropped["relations with a left-out argument"] += 1
        elif ends[0] == ends[1]:
            raise item.error("Arg1 and Arg2 are the same entity; a relation needs two", "arguments", line=n)
        else:
            item.relations.append(_Relation(ends[0], ends[1], label, "type", line=n))
    return item


def _brat_entity(item: _Item, parts: List[str], n: int, fail: Fail, report: ImportReport) -> Optional[int]:
    """Add the entity of a T line to ``item.entities``; return its index, or
    None if it cannot be represented (discontinuous)."""
    label, _, offsets = parts[1].partition(" ")
    if not label.strip():
        raise fail("missing the entity type", "type")
    fragments = []
    for fragment in offsets.split(";"):
        bounds = fragment.split()
        if len(bounds) != 2 or not all(b.isdigit() for b in bounds):
            raise fail(f"expected START END (or START END;START END), got {show(offsets)}", "offsets")
        start, end = int(bounds[0]), int(bounds[1])
        if not start < end <= len(item.text):
            raise fail(f"{start} {end} is not a span of the text ({len(item.text)} characters)", "offsets")
        fragments.append((start, end))
    text = " ".join(item.text[s:e] for s, e in fragments)
    given = "\t".join(parts[2:])
    if text != given:
        raise fail(f"is {show(given)}, the .txt file has {show(text)} at {offsets}", "text")
    if len(fragments) > 1:
        report.dropped["discontinuous entities"] += 1
        return None
    item.entities.append(_Entity(fragments[0][0], fragments[0][1], label, "offsets", "type", line=n))
    return len(item.entities) - 1


# ---------------------------------------------------------------------------
# Label Studio


def _read_label_studio(path: Path, source: str, report: ImportReport, text_key: str) -> Iterator[_Item]:
    tasks = load_json(path, source)
    if not isinstance(tasks, list):
        raise ConversionError(
            source, f"expected a list of tasks (Label Studio's JSON export, not JSON-MIN), got {json_type(tasks)}"
        )
    for i, task in enumerate(tasks):
        def fail(problem: str, name: Optional[str] = None, i=i) -> ConversionError:
            return ConversionError(source, problem, record=i, field=name)

        if not isinstance(task, dict):
            raise fail(f"must be a task object with 'data' and 'annotations', got {json_type(task)}")
        data = _get(task, "data", "object", fail)
        if text_key not in data:
            keys = ", ".join(map(show, data)) or "none"
            raise fail(f"missing (the task's data has: {keys}; choose one with --text-key)", f"data.{text_key}")
        text = _get(data, text_key, "str", fail, "data")
        annotations = _get(task, "annotations", "list", fail, default=[])
        chosen = None
        for k, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise fail(f"must be an object with 'result', got {json_type(annotation)}", f"annotations[{k}]")
            if annotation.get("was_cancelled"):
                report.skipped["cancelled annotations"] += 1
            elif chosen is None:
                chosen = k
            else:
                report.skipped["further annotations of a task (the first is imported)"] += 1
        if chosen is None:
            report.skipped["tasks without annotations"] += 1
            continue
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        item = _Item(source, {"record": i}, text, [], [], str(task.get("id", i)))
        where = f"annotations[{chosen}]"
        _label_studio_result(item, _get(annotations[chosen], "result", "list", fail, where), fail, where, report)
        yield item


def _label_studio_result(item: _Item, result: List[Any], fail: Fail, where: str, report: ImportReport) -> None:
    regions: Dict[str, Optional[int]] = {}  # result id -> first entity of the region; None: not imported
    relations = []
    for k, res in enumerate(result):
        at = f"{where}.result[{k}]"
        if not isinstance(res, dict):
            raise fail(f"must be an object with 'type', got {json_type(res)}", at)
        kind = _get(res, "type", "str", fail, at)
        res_id = res.get("id")
        if kind == "relation":
            relations.append((at, res))
            continue
        if kind != "labels":
            report.dropped[f"'{kind}' results"] += 1
            if res_id is not None:
                regions.setdefault(str(res_id), None)
            continue
        value = _get(res, "value", "object", fail, at)
        start, end = (_get(value, key, "int", fail, f"{at}.value") for key in ("start", "end"))
        labels = _get(value, "labels", "list", fail, f"{at}.value")
        if not labels or not all(_KINDS["label"][1](label) for label in labels):
            raise fail(f"must be a non-empty list of labels, got {show(labels)}", f"{at}.value.labels")
        given = value.get("text")
        if given is not None and 0 <= start < end <= len(item.text) and item.text[start:end] != given:
            hint = ""
            if any(ord(c) > 0xFFFF for c in item.text):
                hint = " (the text has characters outside the Basic Multilingual Plane: offsets in UTF-16 units?)"
            raise fail(f"is {show(given)}, the text has {show(item.text[start:end])} at {start}-{end}{hint}",
                       f"{at}.value.text")
        if res_id is not None:
            regions[str(res_id)] = len(item.entities)
        item.entities.extend(_Entity(start, end, label, f"{at}.value", f"{at}.value.labels") for label in labels)
    for at, res in relations:
        ends = []
        for key in ("from_id", "to_id"):
            region = str(_get(res, key, "str", fail, at))
            if region not in regions:
                raise fail(f"no region with id {show(region)} in this annotation", f"{at}.{key}")
            ends.append(regions[region])
        direction = _get(res, "direction", "str", fail, at, default="right")
        if direction not in ("right", "left", "bi"):
            raise fail(f"must be \"right\", \"left\" or \"bi\", got {show(direction)}", f"{at}.direction")
        labels = _get(res, "labels", "list", fail, at, default=[])
        if None in ends:
            report.dropped["relations with a left-out argument"] += 1
            continue
        if not labels:
            report.dropped["relations without a label"] += 1
            continue
        head, tail = ends
        if head == tail:
            raise fail("from_id and to_id are the same region; a relation needs two entities", at)
        chars = [item.entities[e][:2] for e in (head, tail)]  # (start, end)
        if direction == "left" or (direction == "bi" and chars[1] < chars[0]):
            head, tail = tail, head
        for label in labels:
            if not _KINDS["label"][1](label):
                raise fail(f"a label must be a non-empty string, got {show(label)}", f"{at}.labels")
            item.relations.append(_Relation(head, tail, label, f"{at}.labels"))


# ---------------------------------------------------------------------------
# Shared: tokens, sentences, Docs


class _Pipeline:
    """The tokenizer and, if asked, the sentence splitter of the user's pipeline."""

    def __init__(self, lang: Optional[str], model: Optional[str], split_sentences: bool) -> None:
        if lang is not None and model is not None:
            raise ValueError("give a language (--lang) or a pipeline (--model), not both")
        if model is not None:
            nlp = spacy.load(model)
        else:
            try:
                nlp = spacy.blank(lang or "en")
            except ImportError:
                raise ValueError(f"unknown language code {lang!r} (spaCy has no language class for it)") from None
        self.vocab = nlp.vocab
        self.make_doc = nlp.make_doc
        self.splitters: List[Callable[[Doc], Doc]] = []
        if split_sentences:
            self.splitters = self._splitters(nlp)

    @staticmethod
    def _splitters(nlp: Language) -> List[Callable[[Doc], Doc]]:
        """The pipeline's components up to its first sentence setter, or a sentencizer."""
        for k, name in enumerate(nlp.pipe_names):
            assigns = nlp.get_pipe_meta(name).assigns
            if "token.is_sent_start" in assigns or "doc.sents" in assigns:
                return [proc for _name, proc in nlp.pipeline[: k + 1]]
        return [Sentencizer()]

    def segments(self, doc: Doc, spans: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
        """The token ranges of the output docs: the whole doc, or its sentences
        joined where an entity crosses a boundary."""
        if not self.splitters or not len(doc):
            return [(0, len(doc))]
        for proc in self.splitters:
            doc = proc(doc)
        inside = {i for start, end in spans for i in range(start + 1, end)}
        starts = []
        for sent in doc.sents:
            start = sent.start
            while start and start < len(doc) and doc[start].is_space:  # whitespace stays with the sentence before
                start += 1
            if start not in inside and start < len(doc) and start not in starts:
                starts.append(start)
        return list(zip(starts, starts[1:] + [len(doc)]))


def _align(item: _Item, doc: Doc, ent: _Entity, strict: bool, report: ImportReport) -> Tuple[int, int]:
    """The token offsets of an entity given by character offsets (see the
    module docstring for the policy)."""
    text = doc.text
    if not 0 <= ent.start < ent.end <= len(text):
        raise item.error(f"{ent.start}-{ent.end} is not a span of the text ({len(text)} characters)", ent.field,
                         ent.line)
    start, end = ent.start, ent.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end:
        raise item.error(f"{ent.start}-{ent.end} covers only whitespace", ent.field, ent.line)
    report.trimmed += (start, end) != (ent.start, ent.end)
    span = doc.char_span(start, end)
    if span is None:
        span = doc.char_span(start, end, alignment_mode="expand")
        if strict:
            raise item.error(
                f"{show(text[start:end])} ({start}-{end}) does not fall on token boundaries: the tokens are "
                f"{show(span.text)} ({span.start_char}-{span.end_char}); fix the offsets, or leave out --strict "
                "to expand it to whole tokens",
                ent.field,
                ent.line,
            )
        report.expanded += 1
        if len(report.examples) < N_EXAMPLES:
            report.examples.append(f"{item.place(ent.line)}: {show(text[start:end])} -> {show(span.text)}")
    if ent.tokens is not None and ent.tokens != (span.start, span.end):
        raise item.error(
            f"token_start/token_end {ent.tokens[0]}/{ent.tokens[1] - 1} do not match the characters "
            f"{ent.start}-{ent.end}, which are tokens {span.start}/{span.end - 1}",
            ent.field,
            ent.line,
        )
    return span.start, span.end


def _item_docs(item: _Item, pipeline: _Pipeline, spans_key: str, strict: bool, types: Optional[SpertTypes],
               report: ImportReport) -> List[Doc]:
    """The Docs of one annotated text (one, or one per sentence)."""
    if types is not None:
        for known, kind, annotations in ((types.entities, "entity", item.entities),
                                         (types.relations, "relation", item.relations)):
            for ann in annotations:
                if ann.label not in known:
                    raise item.error(f"unknown {kind} type {show(ann.label)} (the types file has: "
                                     f"{', '.join(known)})", ann.label_field, ann.line)
    doc = item.doc if item.doc is not None else pipeline.make_doc(item.text)
    spans = [_align(item, doc, ent, strict, report) for ent in item.entities]
    segments = pipeline.segments(doc, spans)
    docs = []
    for first, last in segments:
        tokens = doc[first:last]
        out = Doc(pipeline.vocab, words=[t.text for t in tokens], spaces=[bool(t.whitespace_) for t in tokens])
        kept = {i: Span(out, start - first, end - first, label=ent.label)
                for i, ((start, end), ent) in enumerate(zip(spans, item.entities)) if first <= start < last}
        out.spans[spans_key] = SpanGroup(out, name=spans_key, spans=list(kept.values()))
        out._.set(RELATIONS_ATTR, [make_relation(kept[rel.head], kept[rel.tail], rel.label)
                                   for rel in item.relations if rel.head in kept and rel.tail in kept])
        out.user_data["orig_id"] = item.orig_id
        docs.append(out)
        report.docs += 1
        report.entities += len(kept)
        report.relations += len(out._.get(RELATIONS_ATTR))
    crossing = sum(1 for rel in item.relations if not any(
        first <= spans[rel.head][0] < last and first <= spans[rel.tail][0] < last
        for first, last in segments))
    if crossing:
        report.dropped["relations across sentence boundaries"] += crossing
    return docs


def import_docs(
    fmt: str,
    input_path: PathLike,
    *,
    lang: Optional[str] = None,
    model: Optional[str] = None,
    spans_key: str = "sc",
    strict: bool = False,
    split_sentences: bool = False,
    types_path: Optional[PathLike] = None,
    text_key: str = "text",
) -> Tuple[List[Doc], ImportReport]:
    """Read annotations of an annotation tool into Docs (see the module
    docstring for the formats and policies).

    fmt (str): "prodigy", "brat" or "label-studio".
    input_path (str / Path): A Prodigy JSONL file, a brat folder (or .ann
        file) or a Label Studio JSON export.
    lang (Optional[str]): Language code of a blank tokenizer (default "en").
    model (Optional[str]): A pipeline (name or path) whose tokenizer and
        sentence splitter to use instead; excludes ``lang``.
    spans_key (str): The span group for the entities.
    strict (bool): Make an entity that is not on token boundaries an error
        instead of expanding it to whole tokens.
    split_sentences (bool): One Doc per sentence instead of per text.
    types_path (Optional[str / Path]): A SpERT types file; entity and relation
        types not in it are errors.
    text_key (str): Label Studio: the key of the text in a task's ``data``.
    RETURNS (Tuple[List[Doc], ImportReport]): The Docs and what was imported,
        skipped and left out.
    RAISES: ConversionError (a ValueError) for invalid data, naming the file,
        record or line and field; ValueError for an unknown format, both
        ``lang`` and ``model`` or no docs to write; OSError if a file cannot
        be read.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    if not isinstance(spans_key, str) or not spans_key:
        raise ValueError(f"spans_key must be a non-empty string, got {spans_key!r}")
    install_extensions()
    types = read_types(types_path) if types_path is not None else None
    pipeline = _Pipeline(lang, model, split_sentences)
    path, source = Path(input_path), str(input_path)
    report = ImportReport()
    if fmt == "prodigy":
        items = _read_prodigy(path, source, report, pipeline.vocab)
    elif fmt == "brat":
        items = _read_brat(path, report)
    else:
        items = _read_label_studio(path, source, report, text_key)
    docs = [doc for item in items for doc in _item_docs(item, pipeline, spans_key, strict, types, report)]
    if not docs:
        skipped = ", ".join(f"{n} {what}" for what, n in sorted(report.skipped.items())) or "the input is empty"
        raise ConversionError(source, f"nothing to import ({skipped})")
    return docs, report


def import_file(fmt: str, input_path: PathLike, output_path: PathLike, **options: Any) -> ImportReport:
    """Import annotations (see :func:`import_docs`, which takes the same
    options) and write them as a ``.spacy`` DocBin with user data.

    All input is read and checked before anything is written; the file is
    written to a temporary file and renamed into place, so on any error no
    output file, partial or otherwise, is left (an existing one is left
    unchanged).

    RETURNS (ImportReport): What was written, skipped and left out.
    """
    docs, report = import_docs(fmt, input_path, **options)
    write_atomic(DocBin(store_user_data=True, docs=docs).to_bytes(), Path(output_path))
    return report
