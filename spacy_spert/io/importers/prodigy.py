"""Import Prodigy annotations (the ``prodigy`` format of :mod:`spacy_spert.io.importers`).

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

The policies shared with the other formats are in :mod:`.common`.
"""

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..jsonl import json_lines, parse_json_line
from ..validation import ConversionError, json_type, show
from .common import Entity, Fail, ImportReport, Item, Relation, get_field


def read_prodigy(path: Path, source: str, report: ImportReport, vocab: Vocab) -> Iterator[Item]:
    """Read the accepted tasks of a Prodigy JSONL file.

    path (Path): The JSONL file.
    source (str): The file's name for messages.
    report (ImportReport): Counts the tasks skipped and annotations left out.
    vocab (Vocab): The vocab of the Docs built from the tasks' tokens.
    YIELDS (Item): One per accepted task with a text, its ``doc`` the task's tokens.
    RAISES: ConversionError for an invalid line (an InvalidInput of the
        JSON-lines reader for one that is not UTF-8 or not JSON).
    """
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", source)
    for n, raw in json_lines(path):

        def fail(problem: str, name: Optional[str] = None, n=n) -> ConversionError:
            return ConversionError(source, problem, line=n, field=name)

        task = parse_json_line(raw, source, n)
        if not isinstance(task, dict):
            raise fail(f"must be an object (a Prodigy task), got {json_type(task)}")
        answer = get_field(task, "answer", "str", fail)
        if answer not in ("accept", "reject", "ignore"):
            raise fail(f'must be "accept", "reject" or "ignore", got {show(answer)}', "answer")
        if answer != "accept":
            report.skipped[f"'{answer}' answers"] += 1
            continue
        text = get_field(task, "text", "str", fail)
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        item = Item(source, {"line": n}, text, [], [], str(n), _prodigy_doc(task, text, fail, vocab))
        span_tokens = []
        for k, span in enumerate(get_field(task, "spans", "list", fail, default=[])):
            where = f"spans[{k}]"
            if not isinstance(span, dict):
                raise fail(f"must be an object with 'start', 'end' and 'label', got {json_type(span)}", where)
            start, end = (get_field(span, key, "int", fail, where) for key in ("start", "end"))
            first = get_field(span, "token_start", "int", fail, where, default=None)
            last = get_field(span, "token_end", "int", fail, where, default=None)
            tokens = (first, last + 1) if first is not None and last is not None else None
            label = get_field(span, "label", "label", fail, where)
            item.entities.append(Entity(start, end, label, where, f"{where}.label", tokens=tokens))
            span_tokens.append(tokens)
        for k, rel in enumerate(get_field(task, "relations", "list", fail, default=[])):
            where = f"relations[{k}]"
            if not isinstance(rel, dict):
                raise fail(f"must be an object with 'head', 'child' and 'label', got {json_type(rel)}", where)
            label = get_field(rel, "label", "label", fail, where)
            head, tail = (_prodigy_endpoint(rel, side, item, span_tokens, fail, where) for side in ("head", "child"))
            if head is None or tail is None:
                report.dropped["relations with an argument that is not a labelled span"] += 1
            elif head == tail:
                raise fail("head and child are the same span; a relation needs two entities", where)
            else:
                item.relations.append(Relation(head, tail, label, f"{where}.label"))
        yield item


def _prodigy_doc(task: Dict[str, Any], text: str, fail: Fail, vocab: Vocab) -> Doc:
    """The Doc of a task's ``tokens``, checked against its ``text``."""
    tokens = get_field(task, "tokens", "list", fail)
    for k, token in enumerate(tokens):
        if not isinstance(token, dict):
            raise fail(
                f"must be an object with 'text', 'start', 'end' and 'ws', got {json_type(token)}", f"tokens[{k}]"
            )
    words = [get_field(t, "text", "word", fail, f"tokens[{k}]") for k, t in enumerate(tokens)]
    spaces = [get_field(t, "ws", "bool", fail, f"tokens[{k}]") for k, t in enumerate(tokens)]
    doc = Doc(vocab, words=words, spaces=spaces)
    for k, (token, given) in enumerate(zip(doc, tokens)):
        start = get_field(given, "start", "int", fail, f"tokens[{k}]")
        if start != token.idx or text[start : start + len(token)] != token.text:
            raise fail(
                f"token {show(token.text)} is at character {token.idx} of the text its tokens and 'ws' make, "
                f"and the text has {show(text[start : start + len(token)])} at 'start' {start}",
                f"tokens[{k}].start",
            )
    if doc.text != text:
        raise fail(f"the tokens and their 'ws' make {show(doc.text)}, not the task's 'text'", "tokens")
    return doc


def _prodigy_endpoint(
    rel: Dict[str, Any], side: str, item: Item, span_tokens: List[Any], fail: Fail, where: str
) -> Optional[int]:
    """The index in ``item.entities`` of a relation's head or child, or None
    if it is no labelled span of the task."""
    span = get_field(rel, f"{side}_span", "object", fail, where, default=None)
    if span is not None:
        start, end = (get_field(span, key, "int", fail, f"{where}.{side}_span") for key in ("start", "end"))
        label = span.get("label")
        found = [
            i for i, e in enumerate(item.entities) if (e.start, e.end) == (start, end) and label in (None, e.label)
        ]
    else:
        token = get_field(rel, side, "int", fail, where)
        n_tokens = len(item.doc) if item.doc is not None else 0  # Prodigy tasks always have their tokens
        if not 0 <= token < n_tokens:
            raise fail(f"token {token} does not exist (the task has {n_tokens} tokens)", f"{where}.{side}")
        known = [(i, t) for i, t in enumerate(span_tokens) if t is not None]
        found = [i for i, (_first, end) in known if end - 1 == token] or [
            i for i, (first, end) in known if first <= token < end
        ]
    return found[0] if found else None
