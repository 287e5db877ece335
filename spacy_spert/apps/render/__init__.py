"""Draw entities and relations together: ``spacy_spert.render(docs)`` gives
HTML with the text, every entity underlined with its label and score
(overlapping and nested ones stacked), and every relation as a labelled,
directed arc from its head to its tail with its score.

What is reused from displaCy (``spacy.displacy``) and what is new:

- Reused: the entity colours (``displacy``'s defaults, colours registered in
  ``registry.displacy_colors`` and the ``colors`` argument, read from a
  ``SpanRenderer``), the span style of its ``span`` visualiser (a coloured bar
  under each entity with the label at its start, overlapping spans stacked in
  slots ordered by start, longer first, then label), its page template
  (``TPL_PAGE``, for ``page=True``), its title template (``TPL_TITLE``, for
  ``doc.user_data["title"]`` or a record's ``"title"``) and its Jupyter
  handling (auto-detection, the ``tex2jax_ignore`` wrapper, the render
  wrapper set with ``displacy.set_render_wrapper``).
- New: arcs between entity spans; scores on entities and arcs; the layout,
  which wraps long text into rows (an arc whose ends are on two rows is
  drawn in two parts, each with the label, leaving the first row at its end
  and entering the second at its start), one figure per sentence (docs with
  sentence boundaries) or paragraph (text split at blank lines), figures
  joined where an entity or relation crosses them; right-to-left layout for
  figures whose first strong character is right-to-left (Hebrew, Arabic);
  control characters shown as visible symbols; and an optional table of the
  entities and relations with their scores.

The output is static HTML with inline SVG: no script, nothing loaded from
elsewhere, so it works inline in Jupyter, in a standalone file, in a
``Content-Security-Policy`` that forbids scripts and in print. Every piece of
text (the doc's, labels, titles) is escaped. Text is set in a monospace font
whose advance is estimated per character (wide East Asian characters and
emoji count two columns, combining marks none); each word gets its
estimated width with SVG ``textLength``, so an estimate that is off shrinks
or stretches a word but never moves it onto another.

Input: spaCy Docs processed by a pipeline with ``spert`` (entities from
``doc.spans[spans_key]`` with their ``attrs["scores"]``, relations from
``doc._.relations``, converted by :func:`~spacy_spert.apps.predict.doc_to_record`)
or the records themselves (the JSONL lines of ``predict``, the answers of the
``serve`` API).
"""
import html
import os
import re
import unicodedata
import zlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc

from ..predict import doc_to_record

__all__ = ["render", "render_doc", "render_table", "render_file", "read_records", "check_record", "shown", "STYLE"]

DocLike = Union[Doc, Dict[str, Any]]
SPLITS = ("auto", "paragraph", "none")
DIRECTIONS = ("auto", "ltr", "rtl")

# Geometry, in px. Text is monospace: CHAR_W = 0.6 em per column.
FONT_SIZE = 16
CHAR_W = 0.6 * FONT_SIZE
LABEL_SIZE = 11
LABEL_CHAR_W = 0.6 * LABEL_SIZE
TEXT_H = 22  # a row of text, from its top to its bottom
ASCENT = 16  # text top to baseline
SLOT_H = 18  # one stacked entity bar with its label tab
LEVEL_H = 18  # one level of arcs
ARC_GAP = 3  # arcs end this far above the text
ROW_GAP = 10
MARGIN = 8
RADIUS = 5
LABEL_PAD = 3
FONT_FAMILY = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace"
# Colours for labels displaCy has no colour for, chosen by a hash of the label.
PALETTE = ("#aa9cfc", "#7aecec", "#feca74", "#ff9561", "#bfeeb7", "#c887fb", "#9cc9cc", "#ffeb80",
           "#ff8197", "#f0d0ff", "#bfe1d9", "#e4e7d2")
ARC_COLOR = "#444"

STYLE = """<style>
.spert-render { font-family: -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif; }
.spert-render figure { margin: 0 0 1.5rem 0; }
.spert-render svg { max-width: 100%; height: auto; display: block; }
.spert-render table { border-collapse: collapse; margin: 0.5rem 0 1.5rem 0; font-size: 14px; }
.spert-render th, .spert-render td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
.spert-render td.score { font-variant-numeric: tabular-nums; }
.spert-render caption { text-align: left; font-weight: bold; padding: 4px 0; }
</style>"""

_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")
_WORD = re.compile(r"\S+")


# Input: records ---------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_score(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_record(record: Any) -> None:
    """Raise a ValueError naming the field if ``record`` is not a record as
    :func:`~spacy_spert.apps.predict.doc_to_record` writes it: ``"text"`` a
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
    for i, ent in enumerate(record["entities"]):
        where = f"entities[{i}]"
        if not isinstance(ent, dict):
            raise ValueError(f"{where} must be an object")
        for key in ("start", "end", "label"):
            if key not in ent:
                raise ValueError(f"{where}: no field '{key}'")
        if not (_is_int(ent["start"]) and _is_int(ent["end"]) and 0 <= ent["start"] < ent["end"] <= len(text)):
            raise ValueError(f"{where}: 'start'/'end' = {ent['start']!r}/{ent['end']!r} is not a span of a text "
                             f"of {len(text)} characters")
        if not isinstance(ent["label"], str):
            raise ValueError(f"{where}: 'label' must be a string")
        if not _is_score(ent.get("score")):
            raise ValueError(f"{where}: 'score' must be a number or null")
    n = len(record["entities"])
    for i, rel in enumerate(record["relations"]):
        where = f"relations[{i}]"
        if not isinstance(rel, dict):
            raise ValueError(f"{where} must be an object")
        for key in ("head", "tail", "label"):
            if key not in rel:
                raise ValueError(f"{where}: no field '{key}'")
        for key in ("head", "tail"):
            if not (_is_int(rel[key]) and 0 <= rel[key] < n):
                raise ValueError(f"{where}: '{key}' = {rel[key]!r} is not an index into 'entities' ({n} entities)")
        if not isinstance(rel["label"], str):
            raise ValueError(f"{where}: 'label' must be a string")
        if not _is_score(rel.get("score")):
            raise ValueError(f"{where}: 'score' must be a number or null")


# Text: what is shown and how wide ----------------------------------------------


def _shown_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: NUL -> U+2400 ...
    if code == 0x7F:
        return "\u2421"
    if 0x80 <= code < 0xA0 or 0xD800 <= code < 0xE000:  # C1 controls, lone surrogates
        return "\ufffd"
    return ch


_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def shown(text: str) -> str:
    """``text`` with control characters (other than tab and newline) as
    visible symbols (U+2400...) and lone surrogates as U+FFFD, HTML-escaped."""
    return html.escape(_UNSAFE.sub(lambda m: _shown_char(m.group()), text), quote=True)


def _columns(text: str) -> int:
    n = 0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return n


def _strong_direction(text: str) -> Optional[str]:
    """The direction ("ltr" or "rtl") of the first strongly directional
    character, as HTML's ``dir="auto"`` decides; None if there is none."""
    for ch in text:
        bidi = unicodedata.bidirectional(ch)
        if bidi == "L":
            return "ltr"
        if bidi in ("R", "AL"):
            return "rtl"
    return None


def _score_text(score: Optional[float]) -> str:
    return "" if score is None else f"{score:.2f}"


def _tag(label: str, score: Optional[float]) -> str:
    return f"{label} {_score_text(score)}".strip()


# Layout ----------------------------------------------------------------------


@dataclass
class _Piece:
    """A word, or a part of one cut at an entity boundary or a row end."""

    start: int
    end: int
    text: str
    width: float
    row: int = 0
    x: float = 0.0
    gap: float = 0.0  # the space before it on its row, in reading order


@dataclass
class _Segment:
    """The part of an entity on one row."""

    entity: int
    row: int
    x0: float
    x1: float
    first: bool
    slot: int = 0


@dataclass
class _ArcPart:
    """A relation's arc, or its part on one row."""

    relation: int
    row: int
    xa: float  # where the part starts (head side, or the row edge)
    xb: float
    a_end: bool  # the part ends at an entity at xa (else at a row edge)
    b_end: bool
    arrow_a: bool  # the arrowhead (the tail) is at xa
    arrow_b: bool
    label_width: float
    level: int = 0
    label_x: float = 0.0  # the label's centre


@dataclass
class _Row:
    slots: int = 0
    levels: int = 0
    top: float = 0.0


@dataclass
class _Figure:
    start: int
    end: int
    entities: List[int] = field(default_factory=list)
    relations: List[int] = field(default_factory=list)


def _units(record: Dict[str, Any], sentences: Optional[Sequence[Tuple[int, int]]], split: str) -> List[Tuple[int, int]]:
    text = record["text"]
    if split == "none":
        return [(0, len(text))]
    if split == "auto" and sentences:
        return [(s, e) for s, e in sentences if text[s:e].strip()] or [(0, len(text))]
    units, start = [], 0
    for m in _BLANK_LINE.finditer(text):
        if text[start:m.start()].strip():
            units.append((start, m.start()))
        start = m.end()
    if text[start:].strip() or not units:
        units.append((start, len(text)))
    return units


def _figures(record: Dict[str, Any], units: List[Tuple[int, int]]) -> List[_Figure]:
    """Join the units an entity or relation crosses, then give each figure its
    entities (by their start) and relations (by their head)."""
    entities, relations = record["entities"], record["relations"]
    starts = [s for s, _ in units]

    def unit_of(char: int) -> int:
        return max(bisect_right(starts, char) - 1, 0)

    reach = list(range(len(units)))

    def join(a: int, b: int) -> None:
        a, b = min(a, b), max(a, b)
        reach[a] = max(reach[a], b)

    for ent in entities:
        join(unit_of(ent["start"]), unit_of(ent["end"] - 1))
    for rel in relations:
        join(unit_of(entities[rel["head"]]["start"]), unit_of(entities[rel["tail"]]["start"]))
    figures: List[_Figure] = []
    owner = [0] * len(units)
    i = 0
    while i < len(units):
        j, k = reach[i], i
        while k <= j:
            j = max(j, reach[k])
            owner[k] = len(figures)
            k += 1
        figures.append(_Figure(units[i][0], units[j][1]))
        i = j + 1
    for e, ent in enumerate(entities):
        figures[owner[unit_of(ent["start"])]].entities.append(e)
    for r, rel in enumerate(relations):
        figures[owner[unit_of(entities[rel["head"]]["start"])]].relations.append(r)
    return figures


class _Layout:
    """The rows of one figure: where every piece, entity bar and arc goes."""

    def __init__(self, record: Dict[str, Any], figure: _Figure, max_width: float, direction: str) -> None:
        self.record, self.figure = record, figure
        text = record["text"]
        self.rtl = (direction == "rtl") or (direction == "auto" and _strong_direction(text[figure.start:figure.end]) == "rtl")
        self.pieces = self._pieces(text, figure, max_width)
        self.width = max([p.x + p.width for p in self.pieces], default=0.0)
        self._reorder()
        self.rows = [_Row() for _ in range((self.pieces[-1].row + 1) if self.pieces else 1)]
        self.segments = self._segments()
        self.parts = self._arc_parts()
        self._place_rows()

    def _pieces(self, text: str, figure: _Figure, max_width: float) -> List[_Piece]:
        cuts = sorted({b for e in figure.entities for b in (self.record["entities"][e]["start"],
                                                            self.record["entities"][e]["end"])})
        max_cols = max(int(max_width // CHAR_W), 8)
        space = CHAR_W
        pieces: List[_Piece] = []
        row, x, prev_end = 0, 0.0, figure.start
        for m in _WORD.finditer(text, figure.start, figure.end):
            gap = text[prev_end:m.start()]
            prev_end = m.end()
            if "\n" in gap and pieces:
                row, x = row + 1, 0.0
            new_word = True
            lo = bisect_right(cuts, m.start())
            bounds = [m.start()] + [c for c in cuts[lo:bisect_left(cuts, m.end())]] + [m.end()]
            for start, end in zip(bounds, bounds[1:]):
                for s, e in _chunks(text, start, end, max_cols):
                    width = _columns(text[s:e]) * CHAR_W
                    before = space if (new_word and x > 0) else 0.0
                    if x > 0 and x + before + width > max_width:
                        row, x, before = row + 1, 0.0, 0.0
                    pieces.append(_Piece(s, e, text[s:e], width, row, x + before, before))
                    x += before + width
                    new_word = False
        return pieces

    def _reorder(self) -> None:
        """Place each row's words in visual order: runs of words against the
        figure's direction (English in Hebrew, Hebrew in English) keep their
        own reading order, as the Unicode bidi algorithm orders them at the
        level of words (a word's direction is its first strong character's;
        words without one, such as punctuation and numbers, join the run
        around them when both sides agree, else follow the figure)."""
        own = "rtl" if self.rtl else "ltr"
        rows: Dict[int, List[_Piece]] = {}
        for p in self.pieces:
            rows.setdefault(p.row, []).append(p)
        for row in rows.values():
            dirs = [_strong_direction(p.text) for p in row]
            resolved = list(dirs)
            for i, d in enumerate(dirs):
                if d is None:
                    before = next((x for x in reversed(dirs[:i]) if x is not None), own)
                    after = next((x for x in dirs[i + 1:] if x is not None), own)
                    resolved[i] = before if before == after else own
            # Runs against the figure's direction are reversed, then the whole
            # row is mirrored for a right-to-left figure.
            order: List[int] = []
            i = 0
            while i < len(row):
                j = i
                while j < len(row) and resolved[j] != own:
                    j += 1
                if j > i:
                    order.extend(range(j - 1, i - 1, -1))
                    i = j
                else:
                    order.append(i)
                    i += 1
            x = 0.0
            for n, k in enumerate(order):
                if n:
                    prev = order[n - 1]
                    x += row[max(k, prev)].gap if abs(k - prev) == 1 else CHAR_W
                row[k].x = x
                x += row[k].width
            if self.rtl:
                for p in row:
                    p.x = self.width - p.x - p.width

    def _segments(self) -> List[_Segment]:
        starts = [p.start for p in self.pieces]
        segments: List[_Segment] = []
        self.first_segment: Dict[int, _Segment] = {}
        for e in self.figure.entities:
            ent = self.record["entities"][e]
            i, j = bisect_left(starts, ent["start"]), bisect_left(starts, ent["end"])
            by_row: Dict[int, List[_Piece]] = {}
            for p in self.pieces[i:j]:
                by_row.setdefault(p.row, []).append(p)
            for n, (row, ps) in enumerate(sorted(by_row.items())):
                seg = _Segment(e, row, min(p.x for p in ps), max(p.x + p.width for p in ps), first=n == 0)
                segments.append(seg)
                if n == 0:
                    self.first_segment[e] = seg
        # Stack overlapping bars (their label tabs included) in slots, per row,
        # in displaCy's span order: by start, longer first, then by label.
        by_row_segments: Dict[int, List[Tuple[float, float, _Segment]]] = {}
        for seg in segments:
            lo, hi = seg.x0, seg.x1
            if seg.first:
                ent = self.record["entities"][seg.entity]
                tab = len(_tag(ent["label"], ent.get("score"))) * LABEL_CHAR_W + 2 * LABEL_PAD
                lo, hi = (min(lo, hi - tab), hi) if self.rtl else (lo, max(hi, lo + tab))
            by_row_segments.setdefault(seg.row, []).append((lo, hi, seg))
        for row, items in by_row_segments.items():
            items.sort(key=lambda t: (t[0], -(t[1] - t[0]), self.record["entities"][t[2].entity]["label"]))
            slot_ends: List[float] = []
            for lo, hi, seg in items:
                for k, end in enumerate(slot_ends):
                    if end <= lo:
                        seg.slot, slot_ends[k] = k, hi + 2
                        break
                else:
                    seg.slot = len(slot_ends)
                    slot_ends.append(hi + 2)
            self.rows[row].slots = len(slot_ends)
        return segments

    def _anchors(self) -> Dict[Tuple[int, str], float]:
        """x of each relation's head and tail, spread over the entity's first
        segment when several arcs meet there."""
        at: Dict[int, List[Tuple[Tuple[int, float], int, str]]] = {}
        for r in self.figure.relations:
            rel = self.record["relations"][r]
            h, t = self.first_segment.get(rel["head"]), self.first_segment.get(rel["tail"])
            if h is None or t is None:
                continue
            at.setdefault(rel["head"], []).append(((t.row, (t.x0 + t.x1) / 2), r, "head"))
            at.setdefault(rel["tail"], []).append(((h.row, (h.x0 + h.x1) / 2), r, "tail"))
        anchors: Dict[Tuple[int, str], float] = {}
        for e, ends in at.items():
            seg = self.first_segment[e]
            mid = (seg.x0 + seg.x1) / 2
            ends.sort(key=lambda item: (item[0][0], item[0][1] if not self.rtl else -item[0][1]))
            n = len(ends)
            step = min(8.0, 0.7 * (seg.x1 - seg.x0) / (n - 1)) if n > 1 else 0.0
            for k, (_, r, side) in enumerate(ends):
                anchors[(r, side)] = mid + (k - (n - 1) / 2) * step * (-1 if self.rtl else 1)
        return anchors

    def _arc_parts(self) -> List[_ArcPart]:
        anchors = self._anchors()
        parts: List[_ArcPart] = []
        for r in self.figure.relations:
            rel = self.record["relations"][r]
            if (r, "head") not in anchors:
                continue
            h, t = self.first_segment[rel["head"]], self.first_segment[rel["tail"]]
            xh, xt = anchors[(r, "head")], anchors[(r, "tail")]
            label_width = len(_tag(rel["label"], rel.get("score"))) * LABEL_CHAR_W + 2 * LABEL_PAD
            if h.row == t.row:
                parts.append(_ArcPart(r, h.row, xh, xt, True, True, False, True, label_width))
                continue
            # Two parts: out of the earlier row at its end, into the later row at its start.
            end_edge, start_edge = (0.0, self.width) if self.rtl else (self.width, 0.0)
            (first, x_first), (second, x_second) = sorted([(h, xh), (t, xt)], key=lambda item: item[0].row)
            tail_first = first is t
            parts.append(_ArcPart(r, first.row, x_first, end_edge, True, False, tail_first, False, label_width))
            parts.append(_ArcPart(r, second.row, start_edge, x_second, False, True, False, not tail_first, label_width))
        # Levels per row: narrower arcs lower; arcs on a level never overlap,
        # labels included.
        by_row: Dict[int, List[Tuple[float, float, _ArcPart]]] = {}
        for part in parts:
            lo, hi = min(part.xa, part.xb), max(part.xa, part.xb)
            half = part.label_width / 2
            # The label's centre: the middle of the arc, kept inside the figure.
            part.label_x = max(min((lo + hi) / 2, self.width - half), half) if self.width >= 2 * half else (lo + hi) / 2
            lo, hi = min(lo, part.label_x - half), max(hi, part.label_x + half)
            by_row.setdefault(part.row, []).append((lo, hi, part))
        for row, items in by_row.items():
            items.sort(key=lambda t: (t[1] - t[0], t[0]))
            levels: List[List[Tuple[float, float]]] = []
            for lo, hi, part in items:
                for k, taken in enumerate(levels):
                    if all(hi + 2 <= a or lo >= b + 2 for a, b in taken):
                        part.level = k + 1
                        taken.append((lo, hi))
                        break
                else:
                    levels.append([(lo, hi)])
                    part.level = len(levels)
            self.rows[row].levels = len(levels)
        return parts

    def _place_rows(self) -> None:
        y = 0.0
        for row in self.rows:
            row.top = y
            y += self.arc_height(row) + TEXT_H + row.slots * SLOT_H + ROW_GAP
        self.height = y

    @staticmethod
    def arc_height(row: _Row) -> float:
        return row.levels * LEVEL_H + (ARC_GAP + 4 if row.levels else 0)

    def text_top(self, row: int) -> float:
        return self.rows[row].top + self.arc_height(self.rows[row])


def _chunks(text: str, start: int, end: int, max_cols: int) -> Iterable[Tuple[int, int]]:
    """Cut text[start:end] into pieces of at most max_cols columns (a word
    longer than a row)."""
    if end - start <= max_cols // 2 or _columns(text[start:end]) <= max_cols:
        yield start, end
        return
    s, cols = start, 0
    for i in range(start, end):
        w = _columns(text[i])
        if cols + w > max_cols and i > s:
            yield s, i
            s, cols = i, 0
        cols += w
    yield s, end


# SVG -------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


class _Colors:
    def __init__(self, colors: Optional[Dict[str, str]]) -> None:
        from spacy.displacy.render import SpanRenderer

        renderer = SpanRenderer(options={"colors": colors or {}})
        self.known = renderer.colors  # displaCy's defaults, registered colours, ours; upper-case keys

    def __call__(self, label: str) -> str:
        color = self.known.get(label.upper())
        if color is None:
            color = PALETTE[zlib.crc32(label.encode("utf8", "replace")) % len(PALETTE)]
        return color


def _svg(layout: _Layout, record: Dict[str, Any], colors: _Colors) -> str:
    entities, relations, text = record["entities"], record["relations"], record["text"]
    width = layout.width + 2 * MARGIN
    height = max(layout.height, TEXT_H) + MARGIN
    out: List[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spert-svg" width="{_fmt(width)}" '
        f'height="{_fmt(height)}" viewBox="0 0 {_fmt(width)} {_fmt(height)}" direction="ltr" '
        f'font-family="{html.escape(FONT_FAMILY)}">',
        f'<g transform="translate({MARGIN},{MARGIN})">',
    ]
    entity_chars = [(entities[e]["start"], entities[e]["end"]) for e in layout.figure.entities]
    starts = sorted(s for s, _ in entity_chars)
    ends = sorted(e for _, e in entity_chars)
    # Entity bars, their label tabs and a tooltip.
    segs_by_entity: Dict[int, List[_Segment]] = {}
    for seg in layout.segments:
        segs_by_entity.setdefault(seg.entity, []).append(seg)
    for e, segs in segs_by_entity.items():
        ent = entities[e]
        color = colors(ent["label"])
        tag = _tag(ent["label"], ent.get("score"))
        score = ent.get("score")
        out.append(
            f'<g class="spert-entity" data-entity="{e}" data-label="{shown(ent["label"])}" '
            f'data-score="{_score_text(score)}" data-start="{ent["start"]}" data-end="{ent["end"]}">'
            f'<title>{shown(text[ent["start"]:ent["end"]])}: {shown(tag)}</title>'
        )
        for seg in segs:
            y = layout.text_top(seg.row) + TEXT_H + seg.slot * SLOT_H
            out.append(f'<rect x="{_fmt(seg.x0 - 1)}" y="{_fmt(y)}" width="{_fmt(seg.x1 - seg.x0 + 2)}" height="4" '
                       f'fill="{html.escape(color)}"/>')
            if seg.first:
                tab = len(tag) * LABEL_CHAR_W + 2 * LABEL_PAD
                tx = seg.x1 - tab + 1 if layout.rtl else seg.x0 - 1
                out.append(
                    f'<rect x="{_fmt(tx)}" y="{_fmt(y)}" width="{_fmt(tab)}" height="{SLOT_H - 3}" rx="3" '
                    f'fill="{html.escape(color)}"/><text class="spert-entity-label" x="{_fmt(tx + LABEL_PAD)}" '
                    f'y="{_fmt(y + SLOT_H - 6)}" font-size="{LABEL_SIZE}" font-weight="bold" fill="#000" '
                    f'textLength="{_fmt(len(tag) * LABEL_CHAR_W)}" lengthAdjust="spacingAndGlyphs">{shown(tag)}</text>'
                )
        out.append("</g>")
    # Words.
    for p in layout.pieces:
        inside = bisect_right(starts, p.start) > bisect_right(ends, p.start)
        weight = ' font-weight="bold"' if inside else ""
        out.append(
            f'<text class="spert-word" x="{_fmt(p.x)}" y="{_fmt(layout.text_top(p.row) + ASCENT)}" '
            f'font-size="{FONT_SIZE}"{weight} textLength="{_fmt(p.width)}" lengthAdjust="spacingAndGlyphs" '
            f'fill="#000">{shown(p.text)}</text>'
        )
    # Arcs: label on a white box over the line.
    by_relation: Dict[int, List[_ArcPart]] = {}
    for part in layout.parts:
        by_relation.setdefault(part.relation, []).append(part)
    for r, parts in by_relation.items():
        rel = relations[r]
        head, tail = entities[rel["head"]], entities[rel["tail"]]
        tag = _tag(rel["label"], rel.get("score"))
        out.append(
            f'<g class="spert-arc" data-relation="{r}" data-head="{rel["head"]}" data-tail="{rel["tail"]}" '
            f'data-label="{shown(rel["label"])}" data-score="{_score_text(rel.get("score"))}">'
            f'<title>{shown(text[head["start"]:head["end"]])} \u2192 {shown(tag)} \u2192 '
            f'{shown(text[tail["start"]:tail["end"]])}</title>'
        )
        for part in parts:
            out.append(_arc_part(layout, part, tag))
        out.append("</g>")
    out.append("</g></svg>")
    return "".join(out)


def _arc_part(layout: _Layout, part: _ArcPart, tag: str) -> str:
    bottom = layout.text_top(part.row) - ARC_GAP
    y = bottom - part.level * LEVEL_H + LEVEL_H / 2 - 2
    xa, xb = part.xa, part.xb
    sign = 1 if xb >= xa else -1
    r = min(RADIUS, abs(xb - xa) / 2)
    d = []
    if part.a_end:
        d.append(f"M{_fmt(xa)},{_fmt(bottom)} L{_fmt(xa)},{_fmt(y + r)} Q{_fmt(xa)},{_fmt(y)} {_fmt(xa + sign * r)},{_fmt(y)}")
    else:
        d.append(f"M{_fmt(xa)},{_fmt(y)}")
    if part.b_end:
        d.append(f"L{_fmt(xb - sign * r)},{_fmt(y)} Q{_fmt(xb)},{_fmt(y)} {_fmt(xb)},{_fmt(y + r)} L{_fmt(xb)},{_fmt(bottom)}")
    else:
        d.append(f"L{_fmt(xb)},{_fmt(y)}")
    out = [f'<path d="{" ".join(d)}" fill="none" stroke="{ARC_COLOR}" stroke-width="1.5"/>']
    for at, on in ((xa, part.arrow_a), (xb, part.arrow_b)):
        if on:
            out.append(f'<path class="spert-arrowhead" d="M{_fmt(at - 4)},{_fmt(bottom - 7)} L{_fmt(at + 4)},'
                       f'{_fmt(bottom - 7)} L{_fmt(at)},{_fmt(bottom)} Z" fill="{ARC_COLOR}"/>')
    mid = part.label_x
    w = part.label_width
    out.append(
        f'<rect x="{_fmt(mid - w / 2)}" y="{_fmt(y - 7)}" width="{_fmt(w)}" height="14" rx="3" fill="#fff" '
        f'stroke="{ARC_COLOR}" stroke-width="0.5"/><text class="spert-arc-label" x="{_fmt(mid - w / 2 + LABEL_PAD)}" '
        f'y="{_fmt(y + 4)}" font-size="{LABEL_SIZE}" fill="{ARC_COLOR}" textLength="{_fmt(w - 2 * LABEL_PAD)}" '
        f'lengthAdjust="spacingAndGlyphs">{shown(tag)}</text>'
    )
    return "".join(out)


# Tables ------------------------------------------------------------------------


def render_table(record: Dict[str, Any]) -> str:
    """HTML tables of a record's entities (text, label, score, character
    offsets) and relations (head, label, tail, score), all text escaped.

    record (Dict[str, Any]): A record as ``doc_to_record`` gives it.
    RETURNS (str): Two ``<table>`` elements (class ``spert-entities`` and
        ``spert-relations``).
    """
    text, entities = record["text"], record["entities"]

    def ent_text(i: int) -> str:
        ent = entities[i]
        return f'<bdi>{shown(text[ent["start"]:ent["end"]])}</bdi>'

    rows = [
        f'<tr><td>{i}</td><td>{ent_text(i)}</td><td>{shown(e["label"])}</td>'
        f'<td class="score">{_score_text(e.get("score"))}</td><td>{e["start"]}\u2013{e["end"]}</td></tr>'
        for i, e in enumerate(entities)
    ]
    out = [
        f'<table class="spert-entities"><caption>Entities ({len(entities)})</caption>'
        '<thead><tr><th>#</th><th>text</th><th>label</th><th>score</th><th>characters</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    ]
    rows = [
        f'<tr><td>{ent_text(r["head"])}</td><td>{shown(r["label"])}</td><td>{ent_text(r["tail"])}</td>'
        f'<td class="score">{_score_text(r.get("score"))}</td></tr>'
        for r in record["relations"]
    ]
    out.append(
        f'<table class="spert-relations"><caption>Relations ({len(record["relations"])})</caption>'
        '<thead><tr><th>head</th><th>relation</th><th>tail</th><th>score</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )
    return "".join(out)


# render ------------------------------------------------------------------------


def _as_record(doc: DocLike, spans_key: str) -> Tuple[Dict[str, Any], Optional[List[Tuple[int, int]]], Optional[str]]:
    if isinstance(doc, Doc):
        sentences = None
        if doc.has_annotation("SENT_START"):
            sentences = [(s.start_char, s.end_char) for s in doc.sents]
        title = doc.user_data.get("title") if isinstance(doc.user_data.get("title"), str) else None
        return doc_to_record(doc, spans_key), sentences, title
    check_record(doc)
    title = doc.get("title")
    return doc, None, title if isinstance(title, str) else None


def render_doc(doc: DocLike, *, spans_key: str = "sc", split: str = "auto", direction: str = "auto",
               max_width: float = 960, colors: Optional[Dict[str, str]] = None, table: bool = False) -> str:
    """The HTML of one doc or record: its title, one ``<figure>`` per sentence
    or paragraph and, with ``table``, the tables. See :func:`render`."""
    from spacy.displacy.templates import TPL_TITLE

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    record, sentences, title = _as_record(doc, spans_key)
    palette = colors if isinstance(colors, _Colors) else _Colors(colors)
    out = ['<div class="spert-doc">']
    if title:
        out.append(TPL_TITLE.format(title=shown(title)).strip())
    for figure in _figures(record, _units(record, sentences, split)):
        layout = _Layout(record, figure, max_width, direction)
        out.append(f'<figure class="spert-figure" dir="{"rtl" if layout.rtl else "ltr"}">'
                   f'{_svg(layout, record, palette)}</figure>')
    if table:
        out.append(render_table(record))
    out.append("</div>")
    return "".join(out)


def render(
    docs: Union[DocLike, Iterable[DocLike]],
    *,
    spans_key: str = "sc",
    page: bool = False,
    jupyter: Optional[bool] = None,
    split: str = "auto",
    direction: str = "auto",
    max_width: float = 960,
    colors: Optional[Dict[str, str]] = None,
    table: bool = False,
    title: str = "spacy-spert",
) -> Optional[str]:
    """Render the entities and relations of docs as HTML (inline SVG), like
    ``displacy.render`` does for its styles.

    docs (Doc / dict / Iterable): Docs processed by a pipeline with ``spert``
        (or with gold annotation), or records as ``doc_to_record`` and
        ``predict``'s JSONL give them (``{"text", "entities", "relations"}``;
        an optional ``"title"``), or a list of these.
    spans_key (str): The span group of the entities in Docs.
    page (bool): A complete HTML page (displaCy's page template) rather than a
        fragment; for a standalone file.
    jupyter (Optional[bool]): Display the HTML in a Jupyter notebook and return
        None; None: when running in Jupyter (as displaCy decides).
    split (str): "auto": one figure per sentence when the doc has sentence
        boundaries (a parser or sentencizer ran), else per paragraph (text
        between blank lines); "paragraph"; "none": one figure per doc. Figures
        that an entity or relation crosses are joined. Rows wrap at
        ``max_width`` in any case.
    direction (str): "auto" (per figure, from its first strongly directional
        character, as HTML's ``dir="auto"``), "ltr" or "rtl".
    max_width (float): Width of a row of text, in px (16 px monospace: 100
        columns at 960).
    colors (Optional[Dict[str, str]]): Entity label -> CSS colour, added to
        displaCy's colours (``registry.displacy_colors`` included); other
        labels get a colour from a fixed palette by a hash of the label.
    table (bool): Add a table of the entities and relations with scores
        below each doc.
    title (str): The ``<title>`` of a page.
    RETURNS (Optional[str]): The HTML, or None when displayed in Jupyter.
    RAISES: ValueError for a record that is not one (naming the field) or an
        unknown ``split`` or ``direction``.
    """
    from spacy import displacy
    from spacy.displacy.templates import TPL_PAGE
    from spacy.util import is_in_jupyter

    if isinstance(docs, (Doc, dict)):
        docs = [docs]
    palette = _Colors(colors)
    parts = [render_doc(doc, spans_key=spans_key, split=split, direction=direction, max_width=max_width,
                        colors=palette, table=table) for doc in docs]  # type: ignore[arg-type]
    markup = f'<div class="spert-render">{STYLE}{"".join(parts)}</div>'
    if page:
        markup = TPL_PAGE.format(content=markup, lang="en", dir="ltr").strip()
        markup = markup.replace("<title>displaCy</title>", f'<meta charset="utf-8"><title>{shown(title)}</title>', 1)
    if displacy.RENDER_WRAPPER is not None:
        markup = displacy.RENDER_WRAPPER(markup)
    if jupyter or (jupyter is None and is_in_jupyter()):
        from IPython.display import HTML, display

        display(HTML(f'<span class="tex2jax_ignore">{markup}</span>'))
        return None
    return markup


# Files -------------------------------------------------------------------------


def read_records(path: "os.PathLike[str]") -> Iterator[Dict[str, Any]]:
    """The records of a JSONL file as ``predict`` writes it, checked.

    path (Path): The file.
    YIELDS (Dict[str, Any]): One record per non-blank line.
    RAISES: InvalidInput (a ValueError) naming the file, line and field.
    """
    from ..predict import InvalidInput, read_jsonl

    for n, item in enumerate(read_jsonl(Path(path)), 1):
        if isinstance(item, InvalidInput):
            raise item
        _, record = item
        try:
            check_record(record)
        except ValueError as e:
            hint = " (to tag the texts first, pass --model)" if "no field 'entities'" in str(e) else ""
            raise InvalidInput(str(path), f"{e}{hint}", _line_of(Path(path), n)) from None
        yield record


def _line_of(path: Path, n: int) -> int:
    """The line number of the n-th non-blank line."""
    with path.open("rb") as f:
        for i, raw in enumerate(f, 1):
            if raw.strip():
                n -= 1
                if n == 0:
                    return i
    return n


def render_file(
    source: Union[str, "os.PathLike[str]"],
    output_path: Union[str, "os.PathLike[str]"],
    *,
    model: Optional[str] = None,
    texts: Optional[Sequence[str]] = None,
    spans_key: Optional[str] = None,
    text_key: str = "text",
    **options: Any,
) -> int:
    """Write one standalone HTML page (``render(..., page=True)``) of:

    - ``texts`` tagged by the pipeline ``source`` (a directory or package
      name), when ``texts`` is given;
    - the docs of ``source`` tagged by the pipeline ``model`` first, when
      ``model`` is given (any input of ``predict``: JSONL with a text field,
      ``.spacy``, a text file or a folder of ``.txt`` files);
    - else the records of ``source``, ``predict``'s JSONL output, or the docs
      of a ``.spacy`` file as they are (e.g. ``predict``'s ``.spacy`` output
      or gold data).

    source (str / Path): A pipeline (with ``texts``) or an input file.
    output_path (str / Path): The HTML file; written only when complete.
    model (Optional[str]): A pipeline to tag ``source`` with.
    texts (Optional[Sequence[str]]): Texts to tag with the pipeline ``source``.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's, or "sc" without a pipeline).
    text_key (str): The text field of JSONL input to tag.
    options: Further arguments of :func:`render` (``split``, ``table``, ...).
    RETURNS (int): The number of docs rendered.
    RAISES: ValueError (InvalidInput) for invalid input, naming file, line
        and field; OSError if a file cannot be read or written.
    """
    import spacy
    from spacy.tokens import DocBin

    from ...io.files import atomic_output
    from ..predict import _input_items, _valid, spert_spans_key

    source_path = Path(source)
    docs: List[DocLike]
    if texts:
        if model is not None:
            raise ValueError("pass either texts (tagged by the pipeline SOURCE) or --model (to tag the file SOURCE)")
        nlp = spacy.load(source)
        key = spans_key or spert_spans_key(nlp)
        docs = list(nlp.pipe(texts))
    elif model is not None:
        nlp = spacy.load(model)
        key = spans_key or spert_spans_key(nlp)
        items = _valid(_input_items(source_path, nlp, text_key, False), False, [])
        docs = [doc for doc, _ in nlp.pipe(items, as_tuples=True)]
    elif source_path.suffix == ".jsonl":
        key, docs = spans_key or "sc", list(read_records(source_path))
    elif source_path.suffix == ".spacy":
        if not source_path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(source_path))
        key = spans_key or "sc"
        docs = list(DocBin().from_disk(source_path).get_docs(spacy.blank("xx").vocab))
    else:
        raise ValueError(f"{source}: expected predict's JSONL output (.jsonl) or a .spacy file; to tag texts, "
                         "pass a pipeline with --text, or the input with --model")
    markup = render(docs, spans_key=key, page=True, jupyter=False, **options) or ""
    with atomic_output(output_path) as f:
        f.write(markup.encode("utf8"))
    return len(docs)
