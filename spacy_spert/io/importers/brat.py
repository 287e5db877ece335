"""Import brat standoff annotations (the ``brat`` format of :mod:`spacy_spert.io.importers`).

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

The policies shared with the other formats are in :mod:`.common`.
"""

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..validation import ConversionError, decode_error_place, show
from .common import Entity, Fail, ImportReport, Item, Relation

BOM = "\ufeff"
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


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConversionError(str(path), f"not valid UTF-8 text: {decode_error_place(e)}") from None


def read_brat(path: Path, report: ImportReport) -> Iterator[Item]:
    """Read the annotated texts of a brat folder or ``.ann`` file.

    path (Path): A folder (searched recursively) of ``.txt`` and ``.ann``
        files, or one ``.ann`` file.
    report (ImportReport): Counts the texts skipped and annotations left out.
    YIELDS (Item): One per ``.ann`` file with a non-empty text.
    RAISES: ConversionError for an invalid file; FileNotFoundError if ``path``
        does not exist.
    """
    for ann_path in _brat_files(path, report):
        ann_source = str(ann_path)
        txt_path = ann_path.with_suffix(".txt")
        if not txt_path.exists():
            raise ConversionError(ann_source, f"no text file {txt_path.name} next to it")
        # newline="" semantics: brat counts "\r\n" as two characters.
        text, ann_text = _read_utf8(txt_path), _read_utf8(ann_path)
        # A byte order mark (Notepad writes one) is not annotation: brat
        # counts it as the text's first character, so a space keeps the offsets.
        if text.startswith(BOM):
            text = " " + text[1:]
            report.byte_order_marks += 1
        if ann_text.startswith(BOM):
            ann_text = ann_text[1:]
            report.byte_order_marks += 1
        lines = [line.rstrip("\r") for line in ann_text.split("\n")]
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        name = ann_path.relative_to(path).with_suffix("").as_posix() if path.is_dir() else ann_path.stem
        item = Item(ann_source, {}, text, [], [], name)
        yield _brat_item(item, lines, report)


def _brat_item(item: Item, lines: List[str], report: ImportReport) -> Item:
    """Fill ``item`` from the lines of its .ann file."""
    entities: Dict[str, Optional[int]] = {}  # T id -> index in item.entities, None if not imported
    others = set()  # ids of events and of annotations that are not entities
    triggers = set()
    relations = []
    first_of: Dict[Tuple[int, int, str], int] = {}  # (start, end, type) -> index of its first T line
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
            index = _brat_entity(item, parts, n, fail, report)
            if index is not None:
                ent = item.entities[index]
                first = first_of.setdefault((ent.start, ent.end, ent.label), index)
                if first != index:  # the same entity again: one entity, both ids
                    item.entities.pop()
                    report.merged["entities"] += 1
                    index = first
            entities[ann_id] = index
        elif kind == "R":
            args = parts[1].split() if len(parts) > 1 else []
            if len(args) != 3 or not all(":" in arg for arg in args[1:]):
                raise fail(
                    f"a relation is TYPE Arg1:ID Arg2:ID, got {show(parts[1] if len(parts) > 1 else '')}", "arguments"
                )
            relations.append((n, args[0], [arg.split(":", 1)[1] for arg in args[1:]]))
            others.add(ann_id)
        elif kind == "E":
            report.dropped["events"] += 1
            others.add(ann_id)
            trigger_arg = parts[1].split()[0].split(":", 1) if len(parts) > 1 and parts[1].strip() else []
            if len(trigger_arg) == 2:
                triggers.add(trigger_arg[1])
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
    kept_indices = sorted({index for index in entities.values() if index is not None})
    position = {index: k for k, index in enumerate(kept_indices)}
    item.entities = [item.entities[index] for index in kept_indices]
    kept = {ann_id: position[index] for ann_id, index in entities.items() if index is not None}
    seen = set()
    for n, label, args in relations:
        ends = []
        for arg in args:
            if arg not in entities and arg not in others:
                raise item.error(f"{arg} is not defined in this file", "arguments", line=n)
            ends.append(kept.get(arg))
        head, tail = ends
        if head is None or tail is None:
            report.dropped["relations with a left-out argument"] += 1
        elif head == tail:
            raise item.error("Arg1 and Arg2 are the same entity; a relation needs two", "arguments", line=n)
        elif (head, tail, label) in seen:
            report.merged["relations"] += 1
        else:
            seen.add((head, tail, label))
            item.relations.append(Relation(head, tail, label, "type", line=n))
    return item


def _brat_entity(item: Item, parts: List[str], n: int, fail: Fail, report: ImportReport) -> Optional[int]:
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
    item.entities.append(Entity(fragments[0][0], fragments[0][1], label, "offsets", "type", line=n))
    return len(item.entities) - 1
