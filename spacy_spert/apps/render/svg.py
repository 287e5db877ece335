"""The SVG drawing of a laid-out figure (:func:`figure_svg`): the words, the
entity bars with their label tabs, and the arcs with their labels, each
entity and arc a ``<g>`` with its data and a tooltip; and the entity colours
(:class:`Colors`, displaCy's)."""

import html
import zlib
from bisect import bisect_right
from typing import Any, Dict, List, Optional

from .layout import (
    ARC_GAP,
    ASCENT,
    FONT_SIZE,
    LABEL_CHAR_W,
    LABEL_PAD,
    LABEL_SIZE,
    LEVEL_H,
    MARGIN,
    RADIUS,
    SLOT_H,
    TEXT_H,
    ArcPart,
    Layout,
    Segment,
)
from .text import isolated, label_tag, score_text, shown, shown_tag

__all__ = ["Colors", "figure_svg"]

FONT_FAMILY = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace"
# Colours for labels displaCy has no colour for, chosen by a hash of the label.
PALETTE = (
    "#aa9cfc",
    "#7aecec",
    "#feca74",
    "#ff9561",
    "#bfeeb7",
    "#c887fb",
    "#9cc9cc",
    "#ffeb80",
    "#ff8197",
    "#f0d0ff",
    "#bfe1d9",
    "#e4e7d2",
)
ARC_COLOR = "#444"


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


class Colors:
    """The colour of each entity label: displaCy's (its defaults, those
    registered in ``registry.displacy_colors`` and ``colors``), else one of
    :data:`PALETTE` by a hash of the label.

    colors (Optional[Dict[str, str]]): Label -> CSS colour, added to displaCy's.
    """

    def __init__(self, colors: Optional[Dict[str, str]]) -> None:
        from spacy.displacy.render import SpanRenderer

        renderer = SpanRenderer(options={"colors": colors or {}})
        self.known = renderer.colors  # displaCy's defaults, registered colours, ours; upper-case keys

    def __call__(self, label: str) -> str:
        color = self.known.get(label.upper())
        if color is None:
            color = PALETTE[zlib.crc32(label.encode("utf8", "replace")) % len(PALETTE)]
        return color


def figure_svg(layout: Layout, record: Dict[str, Any], colors: Colors) -> str:
    """The ``<svg>`` of one laid-out figure.

    layout (Layout): The figure's layout. record (Dict[str, Any]): The record it is of.
    colors (Colors): The entity colours.
    RETURNS (str): The SVG element, all text escaped.
    """
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
    segs_by_entity: Dict[int, List[Segment]] = {}
    for seg in layout.segments:
        segs_by_entity.setdefault(seg.entity, []).append(seg)
    for e, segs in segs_by_entity.items():
        ent = entities[e]
        color = colors(ent["label"])
        tag = label_tag(ent["label"], ent.get("score"))  # its length sizes the tab
        score = ent.get("score")
        shown_label = shown_tag(ent["label"], score)
        out.append(
            f'<g class="spert-entity" data-entity="{e}" data-label="{shown(ent["label"])}" '
            f'data-score="{score_text(score)}" data-start="{ent["start"]}" data-end="{ent["end"]}">'
            f"<title>{isolated(text[ent['start'] : ent['end']])}: {shown_label}</title>"
        )
        for seg in segs:
            y = layout.text_top(seg.row) + TEXT_H + seg.slot * SLOT_H
            out.append(
                f'<rect x="{_fmt(seg.x0 - 1)}" y="{_fmt(y)}" width="{_fmt(seg.x1 - seg.x0 + 2)}" height="4" '
                f'fill="{html.escape(color)}"/>'
            )
            if seg.first:
                tab = len(tag) * LABEL_CHAR_W + 2 * LABEL_PAD
                tx = seg.x1 - tab + 1 if layout.rtl else seg.x0 - 1
                out.append(
                    f'<rect x="{_fmt(tx)}" y="{_fmt(y)}" width="{_fmt(tab)}" height="{SLOT_H - 3}" rx="3" '
                    f'fill="{html.escape(color)}"/><text class="spert-entity-label" x="{_fmt(tx + LABEL_PAD)}" '
                    f'y="{_fmt(y + SLOT_H - 6)}" font-size="{LABEL_SIZE}" font-weight="bold" fill="#000" '
                    f'textLength="{_fmt(len(tag) * LABEL_CHAR_W)}" lengthAdjust="spacingAndGlyphs">{shown_label}</text>'
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
    by_relation: Dict[int, List[ArcPart]] = {}
    for part in layout.parts:
        by_relation.setdefault(part.relation, []).append(part)
    for r, parts in by_relation.items():
        rel = relations[r]
        head, tail = entities[rel["head"]], entities[rel["tail"]]
        tag = shown_tag(rel["label"], rel.get("score"))
        out.append(
            f'<g class="spert-arc" data-relation="{r}" data-head="{rel["head"]}" data-tail="{rel["tail"]}" '
            f'data-label="{shown(rel["label"])}" data-score="{score_text(rel.get("score"))}">'
            f"<title>{isolated(text[head['start'] : head['end']])} \u2192 {tag} \u2192 "
            f"{isolated(text[tail['start'] : tail['end']])}</title>"
        )
        for part in parts:
            out.append(_arc_part(layout, part, tag))
        out.append("</g>")
    out.append("</g></svg>")
    return "".join(out)


def _arc_part(layout: Layout, part: ArcPart, tag: str) -> str:
    """One drawn part of an arc with its label tag (``tag``: already escaped, see shown_tag)."""
    bottom = layout.text_top(part.row) - ARC_GAP
    y = bottom - part.level * LEVEL_H + LEVEL_H / 2 - 2
    xa, xb = part.xa, part.xb
    sign = 1 if xb >= xa else -1
    r = min(RADIUS, abs(xb - xa) / 2)
    d = []
    if part.a_end:
        d.append(
            f"M{_fmt(xa)},{_fmt(bottom)} L{_fmt(xa)},{_fmt(y + r)} Q{_fmt(xa)},{_fmt(y)} {_fmt(xa + sign * r)},{_fmt(y)}"
        )
    else:
        d.append(f"M{_fmt(xa)},{_fmt(y)}")
    if part.b_end:
        d.append(
            f"L{_fmt(xb - sign * r)},{_fmt(y)} Q{_fmt(xb)},{_fmt(y)} {_fmt(xb)},{_fmt(y + r)} L{_fmt(xb)},{_fmt(bottom)}"
        )
    else:
        d.append(f"L{_fmt(xb)},{_fmt(y)}")
    out = [f'<path d="{" ".join(d)}" fill="none" stroke="{ARC_COLOR}" stroke-width="1.5"/>']
    for at, on in ((xa, part.arrow_a), (xb, part.arrow_b)):
        if on:
            out.append(
                f'<path class="spert-arrowhead" d="M{_fmt(at - 4)},{_fmt(bottom - 7)} L{_fmt(at + 4)},'
                f'{_fmt(bottom - 7)} L{_fmt(at)},{_fmt(bottom)} Z" fill="{ARC_COLOR}"/>'
            )
    mid = part.label_x
    w = part.label_width
    out.append(
        f'<rect x="{_fmt(mid - w / 2)}" y="{_fmt(y - 7)}" width="{_fmt(w)}" height="14" rx="3" fill="#fff" '
        f'stroke="{ARC_COLOR}" stroke-width="0.5"/><text class="spert-arc-label" x="{_fmt(mid - w / 2 + LABEL_PAD)}" '
        f'y="{_fmt(y + 4)}" font-size="{LABEL_SIZE}" fill="{ARC_COLOR}" textLength="{_fmt(w - 2 * LABEL_PAD)}" '
        f'lengthAdjust="spacingAndGlyphs">{tag}</text>'
    )
    return "".join(out)
