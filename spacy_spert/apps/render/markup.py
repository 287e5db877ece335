"""The HTML of one doc or record: its figures (:func:`render_doc`) and the
tables of its entities and relations (:func:`render_table`), with the style
sheet they share (:data:`STYLE`)."""

from typing import Any, Dict, List, Optional, Tuple, Union

from spacy.tokens import Doc

from ...io.records import check_record, doc_to_record
from .layout import Layout, group_figures, split_units
from .svg import Colors, figure_svg
from .text import score_text, shown

__all__ = ["DIRECTIONS", "SPLITS", "STYLE", "DocLike", "render_doc", "render_table"]

DocLike = Union[Doc, Dict[str, Any]]
SPLITS = ("auto", "paragraph", "none")
DIRECTIONS = ("auto", "ltr", "rtl")

STYLE = """<style>
.spert-render { font-family: -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif; }
.spert-render figure { margin: 0 0 1.5rem 0; }
.spert-render svg { max-width: 100%; height: auto; display: block; }
.spert-render table { border-collapse: collapse; margin: 0.5rem 0 1.5rem 0; font-size: 14px; }
.spert-render th, .spert-render td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
.spert-render td.score { font-variant-numeric: tabular-nums; }
.spert-render caption { text-align: left; font-weight: bold; padding: 4px 0; }
</style>"""


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
        return f"<bdi>{shown(text[ent['start'] : ent['end']])}</bdi>"

    rows = [
        f"<tr><td>{i}</td><td>{ent_text(i)}</td><td><bdi>{shown(e['label'])}</bdi></td>"
        f'<td class="score">{score_text(e.get("score"))}</td><td>{e["start"]}\u2013{e["end"]}</td></tr>'
        for i, e in enumerate(entities)
    ]
    out = [
        f'<table class="spert-entities"><caption>Entities ({len(entities)})</caption>'
        "<thead><tr><th>#</th><th>text</th><th>label</th><th>score</th><th>characters</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    ]
    rows = [
        f"<tr><td>{ent_text(r['head'])}</td><td><bdi>{shown(r['label'])}</bdi></td><td>{ent_text(r['tail'])}</td>"
        f'<td class="score">{score_text(r.get("score"))}</td></tr>'
        for r in record["relations"]
    ]
    out.append(
        f'<table class="spert-relations"><caption>Relations ({len(record["relations"])})</caption>'
        "<thead><tr><th>head</th><th>relation</th><th>tail</th><th>score</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return "".join(out)


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


def render_doc(
    doc: DocLike,
    *,
    spans_key: str = "sc",
    split: str = "auto",
    direction: str = "auto",
    max_width: float = 960,
    colors: Optional[Union[Dict[str, str], Colors]] = None,
    table: bool = False,
) -> str:
    """The HTML of one doc or record: its title, one ``<figure>`` per sentence
    or paragraph and, with ``table``, the tables. See :func:`render`."""
    from spacy.displacy.templates import TPL_TITLE

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    record, sentences, title = _as_record(doc, spans_key)
    palette = colors if isinstance(colors, Colors) else Colors(colors)
    out = ['<div class="spert-doc">']
    if title:
        out.append(TPL_TITLE.format(title=shown(title)).strip())
    for figure in group_figures(record, split_units(record, sentences, split)):
        layout = Layout(record, figure, max_width, direction)
        out.append(
            f'<figure class="spert-figure" dir="{"rtl" if layout.rtl else "ltr"}">'
            f"{figure_svg(layout, record, palette)}</figure>"
        )
    if table:
        out.append(render_table(record))
    out.append("</div>")
    return "".join(out)
