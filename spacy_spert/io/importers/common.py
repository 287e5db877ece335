"""What the importers of :mod:`spacy_spert.io.importers` share: the report,
the records of an annotated text, typed access to the fields of a record, and
turning a record into Docs (tokens, sentences, entities, relations).

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
* Malformed input raises a one-line :class:`~spacy_spert.io.validation.ConversionError`
  naming the file, the record (JSON) or line (JSONL, ``.ann``) and the
  field; nothing is written then.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, cast

import spacy
from spacy.language import Language
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc, Span, SpanGroup

from ...relations import RELATIONS_ATTR, make_relation
from ..spert_json import SpertTypes
from ..validation import ConversionError, is_int, show

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
    merged (Counter): Duplicate annotations (same type and offsets or
        arguments) merged into the first, by kind.
    byte_order_marks (int): Files that started with a UTF-8 byte order mark
        (U+FEFF, as Notepad writes), read without it.
    from_predictions (int): Label Studio: tasks imported from a prediction
        (no annotation; ``--predictions``).
    """

    docs: int = 0
    entities: int = 0
    relations: int = 0
    trimmed: int = 0
    expanded: int = 0
    examples: List[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    merged: Counter = field(default_factory=Counter)
    byte_order_marks: int = 0
    from_predictions: int = 0

    def messages(self) -> List[Tuple[str, str]]:
        """The summary as (level, text) lines; level is a wasabi ``msg``
        method ("good", "info", "warn") or "text" for a data line."""
        lines = [("good", f"Imported docs: {self.docs}, entities: {self.entities}, relations: {self.relations}")]
        if self.from_predictions:
            lines.append(("info", f"{self.from_predictions} tasks imported from their predictions (no annotation)"))
        if self.trimmed:
            lines.append(("info", f"{self.trimmed} entities had whitespace at their ends, trimmed"))
        if self.expanded:
            lines.append(("warn", f"{self.expanded} entities not on token boundaries, expanded to whole tokens, e.g."))
            lines.extend(("text", f"  {example}") for example in self.examples)
        if self.byte_order_marks:
            lines.append(
                ("info", f"{self.byte_order_marks} files started with a byte order mark (U+FEFF), read without it")
            )
        lines.extend(("warn", f"merged: {n} duplicate {what}") for what, n in sorted(self.merged.items()))
        lines.extend(("info", f"skipped: {n} {what}") for what, n in sorted(self.skipped.items()))
        lines.extend(("warn", f"left out: {n} {what}") for what, n in sorted(self.dropped.items()))
        return lines


class Entity(NamedTuple):
    """An entity of an Item, by character offsets, as the input gives it."""

    start: int  # character offsets, exclusive end
    end: int
    label: str
    field: str  # the field of the offsets, for messages
    label_field: str  # the field of the label
    line: Optional[int] = None  # the line, where the item has one per annotation (brat)
    tokens: Optional[Tuple[int, int]] = None  # token offsets the input claims (Prodigy), exclusive end


class Relation(NamedTuple):
    """A relation of an Item between two of its entities."""

    head: int  # index into the item's entities
    tail: int
    label: str
    label_field: str
    line: Optional[int] = None


@dataclass
class Item:
    """One annotated text, read from any of the formats."""

    source: str
    where: Dict[str, Any]  # {"record": i[, "record_id": id]} or {"line": n}, for ConversionError
    text: str
    entities: List[Entity]
    relations: List[Relation]
    orig_id: str
    doc: Optional[Doc] = None  # tokens given by the input (Prodigy); else the tokenizer's

    def error(self, problem: str, field: Optional[str] = None, line: Optional[int] = None) -> ConversionError:
        """The ConversionError for ``problem`` at ``field`` of this item (or of ``line`` of its file)."""
        return ConversionError(self.source, problem, field=field, **({"line": line} if line else self.where))

    def place(self, line: Optional[int] = None) -> str:
        """Where this item (or ``line`` of its file) is, for the report: "FILE, record N"."""
        where = {"line": line} if line else self.where
        parts = [self.source] + [f"{key} {value}" for key, value in where.items() if key != "record_id"]
        record_id = where.get("record_id")
        return ", ".join(parts) + (f" (id {record_id})" if record_id is not None else "")


Fail = Callable[..., ConversionError]


def is_label(value: Any) -> bool:
    """Whether ``value`` can be an entity or relation type.

    value (Any): A value read from the input.
    RETURNS (bool): True for a string that is not empty or only whitespace.
    """
    return isinstance(value, str) and bool(value.strip())


_KINDS: Dict[str, Tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", is_int),
    "label": ("a non-empty string", is_label),
    "str": ("a string", lambda v: isinstance(v, str)),
    "word": ("a non-empty string", lambda v: isinstance(v, str) and v != ""),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list": ("a list", lambda v: isinstance(v, list)),
    "object": ("an object", lambda v: isinstance(v, dict)),
}


def get_field(obj: Dict[str, Any], key: str, kind: str, fail: Fail, where: str = "", **default: Any) -> Any:
    """``obj[key]``, checked to be of ``kind`` (see _KINDS); ``default=...``
    makes the key optional (a null value counts as missing then).

    obj (Dict[str, Any]): A record or part of one.
    key (str): The field to read.
    kind (str): What the value must be: a key of _KINDS.
    fail (Fail): Makes the ConversionError for a missing or invalid field
        (called with the problem and the field's name).
    where (str): The path of ``obj`` in its record, for messages.
    RETURNS (Any): The value, or the default.
    """
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
# Tokens, sentences, Docs


class Pipeline:
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


def _align(item: Item, doc: Doc, ent: Entity, strict: bool, report: ImportReport) -> Tuple[int, int]:
    """The token offsets of an entity given by character offsets (see the
    module docstring for the policy)."""
    text = doc.text
    if not 0 <= ent.start < ent.end <= len(text):
        raise item.error(
            f"{ent.start}-{ent.end} is not a span of the text ({len(text)} characters)", ent.field, ent.line
        )
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
        # Never None: the offsets were checked against the text above.
        span = cast(Span, doc.char_span(start, end, alignment_mode="expand"))
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


def item_docs(
    item: Item, pipeline: Pipeline, spans_key: str, strict: bool, types: Optional[SpertTypes], report: ImportReport
) -> List[Doc]:
    """The Docs of one annotated text (one, or one per sentence).

    item (Item): The text and its annotations.
    pipeline (Pipeline): The tokenizer (unless the item has its tokens) and
        sentence splitter.
    spans_key (str): The span group for the entities.
    strict (bool): Make an entity that is not on token boundaries an error.
    types (Optional[SpertTypes]): The types allowed, if given.
    report (ImportReport): Counts what was written and left out.
    RETURNS (List[Doc]): The Docs.
    RAISES: ConversionError for an annotation that cannot be mapped or a type
        not in ``types``.
    """
    if types is not None:
        for known, kind, annotations in (
            (types.entities, "entity", item.entities),
            (types.relations, "relation", item.relations),
        ):
            for ann in annotations:
                if ann.label not in known:
                    raise item.error(
                        f"unknown {kind} type {show(ann.label)} (the types file has: {', '.join(known)})",
                        ann.label_field,
                        ann.line,
                    )
    doc = item.doc if item.doc is not None else pipeline.make_doc(item.text)
    spans = [_align(item, doc, ent, strict, report) for ent in item.entities]
    segments = pipeline.segments(doc, spans)
    docs = []
    for first, last in segments:
        tokens = doc[first:last]
        out = Doc(pipeline.vocab, words=[t.text for t in tokens], spaces=[bool(t.whitespace_) for t in tokens])
        kept = {
            i: Span(out, start - first, end - first, label=ent.label)
            for i, ((start, end), ent) in enumerate(zip(spans, item.entities))
            if first <= start < last
        }
        out.spans[spans_key] = SpanGroup(out, name=spans_key, spans=list(kept.values()))
        out._.set(
            RELATIONS_ATTR,
            [
                make_relation(kept[rel.head], kept[rel.tail], rel.label)
                for rel in item.relations
                if rel.head in kept and rel.tail in kept
            ],
        )
        out.user_data["orig_id"] = item.orig_id
        docs.append(out)
        report.docs += 1
        report.entities += len(kept)
        report.relations += len(out._.get(RELATIONS_ATTR))
    crossing = sum(
        1
        for rel in item.relations
        if not any(
            first <= spans[rel.head][0] < last and first <= spans[rel.tail][0] < last for first, last in segments
        )
    )
    if crossing:
        report.dropped["relations across sentence boundaries"] += crossing
    return docs
