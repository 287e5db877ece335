"""The layout engine: where every word, entity bar and arc of a figure goes.
A doc's text is cut into units (sentences or paragraphs, :func:`split_units`),
units joined into figures where an entity or relation crosses them
(:func:`group_figures`), and each figure laid out in rows (:class:`Layout`):
words wrapped at the row width and put in visual (bidi) order, entity bars
stacked in slots, arcs on levels above the text."""

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .text import columns, label_tag, strong_direction

__all__ = ["ArcPart", "Figure", "Layout", "Piece", "Row", "Segment", "group_figures", "split_units"]

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

_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")
_WORD = re.compile(r"\S+")


@dataclass
class Piece:
    """A word, or a part of one cut at an entity boundary or a row end."""

    start: int
    end: int
    text: str
    width: float
    row: int = 0
    x: float = 0.0
    gap: float = 0.0  # the space before it on its row, in reading order


@dataclass
class Segment:
    """The part of an entity on one row."""

    entity: int
    row: int
    x0: float
    x1: float
    first: bool
    slot: int = 0


@dataclass
class ArcPart:
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
class Row:
    """One row of a figure: its stacked entity bars, its levels of arcs and
    where it starts."""

    slots: int = 0
    levels: int = 0
    top: float = 0.0


@dataclass
class Figure:
    """A run of units drawn as one ``<figure>``, with the entities that start
    in it and the relations whose head does."""

    start: int
    end: int
    entities: List[int] = field(default_factory=list)
    relations: List[int] = field(default_factory=list)


def split_units(
    record: Dict[str, Any], sentences: Optional[Sequence[Tuple[int, int]]], split: str
) -> List[Tuple[int, int]]:
    """The units a record's text is cut into, before figures are joined.

    record (Dict[str, Any]): The record.
    sentences (Optional[Sequence[Tuple[int, int]]]): The doc's sentences as
        character offsets, if it has sentence boundaries.
    split (str): "auto" (sentences if any, else paragraphs), "paragraph"
        (text between blank lines) or "none" (the whole text).
    RETURNS (List[Tuple[int, int]]): (start, end) character offsets of the
        units that are not blank (at least one).
    """
    text = record["text"]
    if split == "none":
        return [(0, len(text))]
    if split == "auto" and sentences:
        return [(s, e) for s, e in sentences if text[s:e].strip()] or [(0, len(text))]
    units, start = [], 0
    for m in _BLANK_LINE.finditer(text):
        if text[start : m.start()].strip():
            units.append((start, m.start()))
        start = m.end()
    if text[start:].strip() or not units:
        units.append((start, len(text)))
    return units


def group_figures(record: Dict[str, Any], units: List[Tuple[int, int]]) -> List[Figure]:
    """Join the units an entity or relation crosses, then give each figure its
    entities (by their start) and relations (by their head).

    record (Dict[str, Any]): The record. units (List[Tuple[int, int]]): Its
        units (:func:`split_units`).
    RETURNS (List[Figure]): The figures, in text order.
    """
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
    figures: List[Figure] = []
    owner = [0] * len(units)
    i = 0
    while i < len(units):
        j, k = reach[i], i
        while k <= j:
            j = max(j, reach[k])
            owner[k] = len(figures)
            k += 1
        figures.append(Figure(units[i][0], units[j][1]))
        i = j + 1
    for e, ent in enumerate(entities):
        figures[owner[unit_of(ent["start"])]].entities.append(e)
    for r, rel in enumerate(relations):
        figures[owner[unit_of(entities[rel["head"]]["start"])]].relations.append(r)
    return figures


class Layout:
    """The rows of one figure: where every piece, entity bar and arc goes.

    record (Dict[str, Any]): The record. figure (Figure): The figure of it to lay out.
    max_width (float): The width of a row of text, in px.
    direction (str): "auto" (from the figure's first strongly directional
        character), "ltr" or "rtl".

    After construction: ``rtl``, ``pieces`` (List[Piece]), ``segments``
    (List[Segment]), ``parts`` (List[ArcPart]), ``rows`` (List[Row]),
    ``first_segment`` (entity -> its first Segment), ``width`` and ``height``.
    """

    def __init__(self, record: Dict[str, Any], figure: Figure, max_width: float, direction: str) -> None:
        self.record, self.figure = record, figure
        text = record["text"]
        self.rtl = (direction == "rtl") or (
            direction == "auto" and strong_direction(text[figure.start : figure.end]) == "rtl"
        )
        self.pieces = self._pieces(text, figure, max_width)
        self.width = max([p.x + p.width for p in self.pieces], default=0.0)
        self._reorder()
        self.rows = [Row() for _ in range((self.pieces[-1].row + 1) if self.pieces else 1)]
        self.segments = self._segments()
        self.parts = self._arc_parts()
        self._place_rows()

    def _pieces(self, text: str, figure: Figure, max_width: float) -> List[Piece]:
        cuts = sorted(
            {
                b
                for e in figure.entities
                for b in (self.record["entities"][e]["start"], self.record["entities"][e]["end"])
            }
        )
        max_cols = max(int(max_width // CHAR_W), 8)
        space = CHAR_W
        pieces: List[Piece] = []
        row, x, prev_end = 0, 0.0, figure.start
        for m in _WORD.finditer(text, figure.start, figure.end):
            gap = text[prev_end : m.start()]
            prev_end = m.end()
            if "\n" in gap and pieces:
                row, x = row + 1, 0.0
            new_word = True
            lo = bisect_right(cuts, m.start())
            bounds = [m.start(), *cuts[lo : bisect_left(cuts, m.end())], m.end()]
            for start, end in pairwise(bounds):
                for s, e in _chunks(text, start, end, max_cols):
                    width = columns(text[s:e]) * CHAR_W
                    before = space if (new_word and x > 0) else 0.0
                    if x > 0 and x + before + width > max_width:
                        row, x, before = row + 1, 0.0, 0.0
                    pieces.append(Piece(s, e, text[s:e], width, row, x + before, before))
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
        rows: Dict[int, List[Piece]] = {}
        for p in self.pieces:
            rows.setdefault(p.row, []).append(p)
        for row in rows.values():
            dirs = [strong_direction(p.text) for p in row]
            resolved = list(dirs)
            for i, d in enumerate(dirs):
                if d is None:
                    before = next((x for x in reversed(dirs[:i]) if x is not None), own)
                    after = next((x for x in dirs[i + 1 :] if x is not None), own)
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

    def _segments(self) -> List[Segment]:
        starts = [p.start for p in self.pieces]
        segments: List[Segment] = []
        self.first_segment: Dict[int, Segment] = {}
        for e in self.figure.entities:
            ent = self.record["entities"][e]
            i, j = bisect_left(starts, ent["start"]), bisect_left(starts, ent["end"])
            by_row: Dict[int, List[Piece]] = {}
            for p in self.pieces[i:j]:
                by_row.setdefault(p.row, []).append(p)
            for n, (row, ps) in enumerate(sorted(by_row.items())):
                seg = Segment(e, row, min(p.x for p in ps), max(p.x + p.width for p in ps), first=n == 0)
                segments.append(seg)
                if n == 0:
                    self.first_segment[e] = seg
        # Stack overlapping bars (their label tabs included) in slots, per row,
        # in displaCy's span order: by start, longer first, then by label.
        by_row_segments: Dict[int, List[Tuple[float, float, Segment]]] = {}
        for seg in segments:
            lo, hi = seg.x0, seg.x1
            if seg.first:
                ent = self.record["entities"][seg.entity]
                tab = len(label_tag(ent["label"], ent.get("score"))) * LABEL_CHAR_W + 2 * LABEL_PAD
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

    def _arc_parts(self) -> List[ArcPart]:
        anchors = self._anchors()
        parts: List[ArcPart] = []
        for r in self.figure.relations:
            rel = self.record["relations"][r]
            if (r, "head") not in anchors:
                continue
            h, t = self.first_segment[rel["head"]], self.first_segment[rel["tail"]]
            xh, xt = anchors[(r, "head")], anchors[(r, "tail")]
            label_width = len(label_tag(rel["label"], rel.get("score"))) * LABEL_CHAR_W + 2 * LABEL_PAD
            if h.row == t.row:
                parts.append(ArcPart(r, h.row, xh, xt, True, True, False, True, label_width))
                continue
            # Two parts: out of the earlier row at its end, into the later row at its start.
            end_edge, start_edge = (0.0, self.width) if self.rtl else (self.width, 0.0)
            (first, x_first), (second, x_second) = sorted([(h, xh), (t, xt)], key=lambda item: item[0].row)
            tail_first = first is t
            parts.append(ArcPart(r, first.row, x_first, end_edge, True, False, tail_first, False, label_width))
            parts.append(ArcPart(r, second.row, start_edge, x_second, False, True, False, not tail_first, label_width))
        # Levels per row: narrower arcs lower; arcs on a level never overlap,
        # labels included.
        by_row: Dict[int, List[Tuple[float, float, ArcPart]]] = {}
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
    def arc_height(row: Row) -> float:
        """The height of a row's arcs above its text, in px."""
        return row.levels * LEVEL_H + (ARC_GAP + 4 if row.levels else 0)

    def text_top(self, row: int) -> float:
        """The y of the top of a row's text, in px."""
        return self.rows[row].top + self.arc_height(self.rows[row])


def _chunks(text: str, start: int, end: int, max_cols: int) -> Iterable[Tuple[int, int]]:
    """Cut text[start:end] into pieces of at most max_cols columns (a word
    longer than a row)."""
    if end - start <= max_cols // 2 or columns(text[start:end]) <= max_cols:
        yield start, end
        return
    s, cols = start, 0
    for i in range(start, end):
        w = columns(text[i])
        if cols + w > max_cols and i > s:
            yield s, i
            s, cols = i, 0
        cols += w
    yield s, end
