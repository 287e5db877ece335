"""The report as one static HTML page (:func:`report_html`), made from the
dict of :func:`~spacy_spert.apps.report.analysis.analyse` alone, so the page
and ``report.json`` hold the same numbers.

No script and nothing loaded from elsewhere; every text (labels, doc text,
titles) is escaped and set in a bidi isolate (``<bdi>``). The examples of a
bucket are listed most frequent first; radio buttons (CSS ``:checked`` and
flex ``order``, no script) show them by score instead, highest or lowest
first.
"""

from typing import Any, Dict, List, Optional, Tuple

from ..render.markup import STYLE as RENDER_STYLE
from ..render.markup import render_doc
from ..render.svg import Colors
from ..render.text import isolated, shown
from .matching import ENTITY_BUCKETS, ENTITY_PAIRS, RELATION_BUCKETS, RELATION_PAIRS
from .plot import calibration_svg

# Width of each side of an example (gold | predicted), in px.
SIDE_WIDTH = 470
SCORE_TABLES = (
    ("entities", "Entities"),
    ("relations_strict", "Relations, strict (boundaries and types of both entities)"),
    ("relations_boundaries", "Relations, boundaries (entity types ignored)"),
)
KINDS = (("entities", "Entities", ENTITY_BUCKETS), ("relations", "Relations (strict)", RELATION_BUCKETS))
ORDERS = (("count", "most frequent first"), ("desc", "highest score first"), ("asc", "lowest score first"))

STYLE = """<style>
body { margin: 1.5rem auto; max-width: 1040px; padding: 0 1rem; color: #222; }
.spert-report h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 2.5rem; }
.spert-report table.nums td { text-align: right; font-variant-numeric: tabular-nums; }
.spert-report table.nums td:first-child, .spert-report table.nums th:first-child { text-align: left; }
.spert-report tr.avg td { font-weight: bold; background: #f6f6f6; }
.spert-report table.confusion td.diag { background: #e3f1e3; }
.spert-report table.confusion td.off { background: #fbe9e7; }
.spert-report table.confusion td.zero { color: #bbb; }
.spert-report nav .links { margin: 0.2rem 0; font-size: 14px; }
.spert-report .note { color: #555; font-size: 14px; max-width: 60rem; }
.spert-report .sorter { position: absolute; opacity: 0; width: 1px; height: 1px; }
.spert-report .orders label { border: 1px solid #bbb; border-radius: 4px; padding: 2px 8px; margin-right: 4px;
  cursor: pointer; font-size: 14px; }
.spert-report .by-count:checked ~ .orders .l-count, .spert-report .by-desc:checked ~ .orders .l-desc,
.spert-report .by-asc:checked ~ .orders .l-asc { background: #333; color: #fff; border-color: #333; }
.spert-report .sorter:focus-visible ~ .orders { outline: 2px solid #1f4e8c; outline-offset: 2px; }
.spert-report .examples { display: flex; flex-direction: column; }
.spert-report .example { order: var(--count); border-top: 1px solid #ddd; padding: 0.5rem 0; }
.spert-report .by-desc:checked ~ .examples > .example { order: var(--desc); }
.spert-report .by-asc:checked ~ .examples > .example { order: var(--asc); }
.spert-report .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.spert-report .side-title { font-size: 12px; text-transform: uppercase; color: #777; }
.spert-report .what { margin: 0.25rem 0; font-size: 15px; }
.spert-report .what .item { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace;
  background: #f2f2f2; padding: 0 3px; }
.spert-report .calibration { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
@media print { .spert-report .orders { display: none; } }
</style>"""


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _num(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}"


def _bdi(text: Any) -> str:
    return f"<bdi>{shown(str(text))}</bdi>"


def _scores_table(name: str, caption: str, table: Dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("label", "support", "predicted", "TP", "FP", "FN", "P", "R", "F1"))
    rows = []

    def row(label: str, values: Dict[str, Any], cls: str = "") -> str:
        counts = [values.get(c) for c in ("support", "predicted", "tp", "fp", "fn")]
        cells = ["" if c is None else str(c) for c in counts] + [_pct(values[m]) for m in ("p", "r", "f")]
        return f"<tr{cls}><td>{label}</td>{''.join(f'<td>{c}</td>' for c in cells)}</tr>"

    for label, values in table["per_label"].items():
        rows.append(row(_bdi(label), values))
    rows.append(row("micro", table["micro"], ' class="avg"'))
    rows.append(row("macro", table["macro"], ' class="avg"'))
    return (
        f'<table class="nums scores" id="scores-{name}"><caption>{shown(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _confusion_table(conf: Dict[str, Any]) -> str:
    labels = conf["labels"]
    head = "".join(f"<th>{_bdi(label)}</th>" for label in labels) + "<th>(missed)</th>"
    rows = []
    for i, counts in enumerate(conf["counts"]):
        name = _bdi(labels[i]) if i < len(labels) else "(spurious)"
        cells = []
        for j, n in enumerate(counts):
            cls = "diag" if i == j and i < len(labels) else ("zero" if not n else "off")
            cells.append(f'<td class="{cls}">{n}</td>')
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    return (
        '<table class="nums confusion" id="confusion-table"><caption>gold type (rows) x predicted type (columns)'
        f"</caption><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _describe(item: Optional[Dict[str, Any]]) -> str:
    if item is None:
        return "nothing"
    if "head" in item:
        head, tail = (f'<span class="item">{_bdi(item[side]["text"])}</span>' for side in ("head", "tail"))
        ends = f"{head} ({_bdi(item['head']['label'])}) \u2192 {tail}"
        text = f"{_bdi(item['label'])}: {ends} ({_bdi(item['tail']['label'])})"
    else:
        text = f'<span class="item">{_bdi(item["text"])}</span> {_bdi(item["label"])}'
    return text + (f' <span class="score">{_num(item["score"])}</span>' if item.get("score") is not None else "")


def _ranks(examples: List[Dict[str, Any]]) -> List[Tuple[int, int]]:
    """Per example, its place by score, highest first and lowest first
    (examples without a score last in both)."""

    def place(descending: bool) -> Dict[int, int]:
        scored = [i for i, ex in enumerate(examples) if ex["score"] is not None]
        scored.sort(key=lambda i: (-examples[i]["score"] if descending else examples[i]["score"], i))
        rest = [i for i, ex in enumerate(examples) if ex["score"] is None]
        return {i: n for n, i in enumerate(scored + rest)}

    desc, asc = place(True), place(False)
    return [(desc[i], asc[i]) for i in range(len(examples))]


def _bucket_section(kind: str, name: str, bucket: Dict[str, Any], colors: Colors) -> str:
    anchor = f"{kind}-{name}"
    examples = bucket["examples"]
    out = [
        f'<section class="bucket" id="{anchor}" data-count="{bucket["count"]}">',
        f"<h3>{shown(bucket['description'])}: {bucket['count']}</h3>",
    ]
    if not examples:
        none = "No errors of this kind." if not bucket["count"] else "No examples shown (--report-examples 0)."
        out.append(f'<p class="note">{none}</p></section>')
        return "".join(out)
    shown_n = len(examples)
    out.append(
        f'<p class="note">{shown_n} example{"s" if shown_n != 1 else ""}, one per distinct error (same texts and '
        "labels), the most frequent first; &times;N: how often it occurs.</p>"
    )
    if sum(ex["score"] is not None for ex in examples) > 1:
        for order, _ in ORDERS:
            checked = " checked" if order == "count" else ""
            out.append(
                f'<input type="radio" class="sorter by-{order}" name="order-{anchor}" id="order-{anchor}-{order}"'
                f"{checked}>"
            )
        labels = "".join(f'<label class="l-{o}" for="order-{anchor}-{o}">{text}</label>' for o, text in ORDERS)
        out.append(f'<p class="orders">Order: {labels}</p>')
    out.append('<div class="examples">')
    for n, (example, (desc, asc)) in enumerate(zip(examples, _ranks(examples))):
        others = [d for d in example["docs"] if d != example["doc"]]
        where = f"doc {example['doc']}" + (f" (also docs {', '.join(map(str, others))})" if others else "")
        sides = []
        for side in ("gold", "predicted"):
            figure = render_doc(example["context"][side], split="none", max_width=SIDE_WIDTH, colors=colors)
            sides.append(f'<div class="side {side}"><div class="side-title">{side}</div>{figure}</div>')
        out.append(
            f'<div class="example" style="--count:{n};--desc:{desc};--asc:{asc}" data-score="{_num(example["score"])}">'
            f'<p class="what"><strong>&times;{example["count"]}</strong> gold: {_describe(example["gold"])} '
            f"&middot; predicted: {_describe(example['predicted'])} &middot; {where}</p>"
            f'<div class="pair">{"".join(sides)}</div></div>'
        )
    out.append("</div></section>")
    return "".join(out)


def _bucket_summary(kind: str, title: str, table: Tuple[Tuple[str, str], ...], report: Dict[str, Any]) -> str:
    buckets = report["buckets"][kind]
    rows = "".join(
        f'<tr data-bucket="{kind}-{name}"><td><a href="#{kind}-{name}">{shown(buckets[name]["description"])}</a></td>'
        f"<td>{buckets[name]['count']}</td></tr>"
        for name, _ in table
    )
    totals = report["totals"][kind]
    pairs = list(ENTITY_PAIRS if kind == "entities" else RELATION_PAIRS)
    fp = pairs + [name for name, _ in table if name.startswith("spurious")]
    fn = pairs + [name for name, _ in table if name.startswith("missed")]

    def identity(total: int, names: List[str]) -> str:
        return f"{total} = " + " + ".join(f"{buckets[name]['count']} {name.replace('_', ' ')}" for name in names)

    return (
        f'<table class="nums buckets" id="buckets-{kind}"><caption>{shown(title)}</caption>'
        f"<thead><tr><th>bucket</th><th>count</th></tr></thead><tbody>{rows}</tbody></table>"
        f'<p class="note">False positives: {identity(totals["false_positives"], fp)}.<br>'
        f"False negatives: {identity(totals['false_negatives'], fn)}.</p>"
    )


def _calibration(kind: str, cal: Dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_num(b['lo'])}&ndash;{_num(b['hi'])}</td><td>{b['count']}</td><td>{b['correct']}</td>"
        f"<td>{_num(b['precision'])}</td><td>{_num(b['mean_score'])}</td></tr>"
        for b in cal["bins"]
    )
    ece = "" if cal["ece"] is None else f"; expected calibration error {cal['ece']:.3f}"
    kind_of = "probabilities" if cal["probabilities"] else "raw scores: bins from the lowest to the highest score"
    return (
        f'<div id="calibration-{kind}"><table class="nums calibration-table" id="calibration-table-{kind}"><caption>{kind.capitalize()}: '
        f"{cal['count']} predictions, {cal['correct']} correct ({kind_of}{ece})</caption>"
        "<thead><tr><th>score</th><th>predictions</th><th>correct</th><th>precision</th><th>mean score</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>{calibration_svg(cal, kind)}</div>"
    )


def _links(title: str, links: List[Tuple[str, str]]) -> str:
    anchors = " &middot; ".join(f'<a href="#{anchor}">{shown(text)}</a>' for anchor, text in links)
    return f'<p class="links"><strong>{shown(title)}:</strong> {anchors}</p>'


def report_html(report: Dict[str, Any], title: str = "spacy-spert error analysis") -> str:
    """The report as a standalone HTML page.

    report (Dict[str, Any]): As :func:`~spacy_spert.apps.report.analysis.analyse` returns it.
    title (str): The page's title and heading (e.g. the model and data).
    RETURNS (str): The page.
    """
    colors = Colors(None)
    links = [("scores", "Scores"), ("confusion", "Entity confusion"), ("errors", "Error buckets")]
    nav = [_links("Contents", [*links, ("calibration", "Calibration")])]
    nav += [_links(heading, [(f"{kind}-{name}", desc) for name, desc in table]) for kind, heading, table in KINDS]
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{isolated(title)}</title>{STYLE}{RENDER_STYLE}</head><body>",
        f'<div class="spert-render spert-report"><h1>{_bdi(title)}</h1>',
        f'<p class="note">{report["docs"]} docs; entities from <code>doc.spans[{_bdi(repr(report["spans_key"]))}]'
        "</code>. Scores as SpERT's evaluator (and <code>evaluate</code>) counts them: P, R and F1 in %.</p>",
        f"<nav>{''.join(nav)}</nav>",
        '<section id="scores"><h2>Scores</h2>',
        *(_scores_table(name, caption, report["scores"][name]) for name, caption in SCORE_TABLES),
        "</section>",
        '<section id="confusion"><h2>Entity confusion</h2><p class="note">Gold and predicted entities with the '
        "same boundaries; (missed): no predicted entity with the boundaries of a gold one (wrong boundaries "
        "included), (spurious): no gold entity with the boundaries of a predicted one.</p>",
        _confusion_table(report["confusion"]),
        "</section>",
        '<section id="errors"><h2>Error buckets</h2><p class="note">Every false positive and false negative is '
        "in exactly one bucket. A false positive is first paired with a false negative, in this order: the same "
        "span (relations: the same entities) with another type; (relations) the same type in the other "
        "direction; overlapping spans with the same type; (entities) overlapping spans with another type. "
        "What is left unpaired is spurious or missed. Counts are strict: the relation tables count entity "
        "types.</p>",
        *(_bucket_summary(kind, heading, table, report) for kind, heading, table in KINDS),
    ]
    for kind, heading, table in KINDS:
        out.append(f"<h2>{shown(heading)}: examples</h2>")
        out.extend(_bucket_section(kind, name, report["buckets"][kind][name], colors) for name, _ in table)
    out.append(
        '</section><section id="calibration"><h2>Calibration</h2><p class="note">Predictions grouped by score: '
        "the share of each bin that is correct (strict) against its scores. Bars under the dashed diagonal: the "
        'scores are too confident there; above: too timid.</p><div class="calibration">'
    )
    out.extend(_calibration(kind, report["calibration"][kind]) for kind in ("entities", "relations"))
    out.append("</div></section></div></body></html>")
    return "".join(out)
