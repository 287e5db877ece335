"""The error-analysis report (spacy_spert/apps/report/): hand-built gold and
predicted docs where the count of every error bucket, every cell of the
entity confusion matrix and every calibration bin is known; the identities
the buckets add up to; agreement with the scorer; the HTML page (escaped, no
script, the same numbers as the JSON, examples ordered by score without a
script)."""

import json
import re
from html.parser import HTMLParser
from typing import Dict, List, Tuple

import numpy
import pytest
import spacy
from conftest import make_doc
from spacy.tokens import Doc, SpanGroup
from spacy.training import Example

from spacy_spert.apps.report import analyse, calibration, report_html, write_report
from spacy_spert.apps.report.analysis import cut_record
from spacy_spert.pipeline.scorer import score_spert
from spacy_spert.relations import make_relation

VOCAB = spacy.blank("en").vocab

# (words, gold entities, gold relations, predicted entities (start, end, label, score),
#  predicted relations (head, tail, label, score)); relations index the doc's entity list.
CORPUS = [
    (  # 0: every entity bucket but "missed"; a wrong endpoint, a spurious entity's relation, two missed
        "Mary Smith works for Acme Corp in Paris and Rome .".split(),
        [(0, 2, "Peop"), (4, 6, "Org"), (7, 8, "Loc"), (9, 10, "Loc")],
        [(0, 1, "Work_For"), (1, 2, "OrgBased_In"), (0, 3, "Live_In")],
        [
            (0, 2, "Peop", 0.95),  # correct
            (4, 6, "Loc", 0.65),  # wrong type
            (6, 8, "Loc", 0.55),  # wrong boundaries ("in Paris")
            (8, 10, "Org", 0.45),  # wrong boundaries and type ("and Rome")
            (2, 3, "Peop", 0.15),  # spurious ("works")
        ],
        [(0, 1, "Work_For", 0.62), (4, 0, "Kill", 0.2)],  # wrong endpoint (Acme is Loc); spurious entity
    ),
    (  # 1: a missed entity, so a relation missed because of it
        "Sue Ray lives in Oslo .".split(),
        [(0, 2, "Peop"), (4, 5, "Loc")],
        [(0, 1, "Live_In")],
        [(0, 2, "Peop", 0.92)],
        [],
    ),
    (  # 2: all entities right; a wrong relation type, a reversed one, one spurious between correct entities
        "Globex , a firm in Berlin , hired Anna Lee .".split(),
        [(0, 1, "Org"), (5, 6, "Loc"), (8, 10, "Peop")],
        [(0, 1, "OrgBased_In"), (2, 0, "Work_For")],
        [(0, 1, "Org", 0.85), (5, 6, "Loc", 0.75), (8, 10, "Peop", 0.91)],
        [(0, 1, "Located_In", 0.5), (0, 2, "Work_For", 0.4), (2, 1, "Live_In", 0.3)],
    ),
    (  # 3: a relation missed with both entities found
        "John Doe lives in London .".split(),
        [(0, 2, "Peop"), (4, 5, "Loc")],
        [(0, 1, "Live_In")],
        [(0, 2, "Peop", 0.88), (4, 5, "Loc", 0.78)],
        [],
    ),
    (  # 4: all right
        "Ann Li works for Initech .".split(),
        [(0, 2, "Peop"), (4, 5, "Org")],
        [(0, 1, "Work_For")],
        [(0, 2, "Peop", 0.97), (4, 5, "Org", 0.83)],
        [(0, 1, "Work_For", 0.85)],
    ),
    (  # 5: "Oslo" missed again: the same error as in doc 1
        "Tom Fox lives in Oslo .".split(),
        [(0, 2, "Peop"), (4, 5, "Loc")],
        [(0, 1, "Live_In")],
        [(0, 2, "Peop", 0.93)],
        [],
    ),
]

ENTITY_COUNTS = {"wrong_type": 1, "wrong_boundaries": 1, "wrong_both": 1, "spurious": 1, "missed": 2}
RELATION_COUNTS = {
    "wrong_type": 1,
    "reversed": 1,
    "wrong_endpoint": 1,
    "spurious_correct_entities": 1,
    "spurious_entity": 1,
    "missed_entity": 4,
    "missed_entities_found": 1,
}


def predicted_doc(words, entities, relations, spans_key: str = "sc", spaces=None) -> Doc:
    """A doc as the component writes it: scored spans (float32 scores) and relations with scores."""
    doc = Doc(VOCAB, words=words, spaces=spaces)
    spans = [doc.char_span(doc[s:e].start_char, doc[s:e].end_char, label=label) for s, e, label, _ in entities]
    scores = numpy.asarray([score for *_, score in entities], dtype="f")
    doc.spans[spans_key] = SpanGroup(doc, name=spans_key, spans=spans, attrs={"scores": scores})
    doc._.relations = [make_relation(spans[h], spans[t], label, score) for h, t, label, score in relations]
    return doc


def make_examples(corpus=CORPUS) -> List[Example]:
    return [
        Example(predicted_doc(words, pred_ents, pred_rels), make_doc(VOCAB, words, ents, rels))
        for words, ents, rels, pred_ents, pred_rels in corpus
    ]


@pytest.fixture(scope="module")
def report():
    return analyse(make_examples())


def counts(report, kind: str) -> Dict[str, int]:
    return {name: bucket["count"] for name, bucket in report["buckets"][kind].items()}


def test_every_bucket_has_its_known_count(report):
    assert counts(report, "entities") == ENTITY_COUNTS
    assert counts(report, "relations") == RELATION_COUNTS


def test_buckets_add_up_to_the_false_positives_and_negatives(report):
    ents, rels = counts(report, "entities"), counts(report, "relations")
    micro = report["scores"]["entities"]["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (10, 4, 5)
    pairs = ents["wrong_type"] + ents["wrong_boundaries"] + ents["wrong_both"]
    assert micro["fp"] == pairs + ents["spurious"]
    assert micro["fn"] == pairs + ents["missed"]
    micro = report["scores"]["relations_strict"]["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (1, 5, 8)
    pairs = rels["wrong_type"] + rels["reversed"] + rels["wrong_endpoint"]
    assert micro["fp"] == pairs + rels["spurious_correct_entities"] + rels["spurious_entity"]
    assert micro["fn"] == pairs + rels["missed_entity"] + rels["missed_entities_found"]
    assert report["totals"] == {
        "entities": {"false_positives": 4, "false_negatives": 5},
        "relations": {"false_positives": 5, "false_negatives": 8},
    }


def test_bucket_examples_name_the_gold_and_predicted_items(report):
    ents = report["buckets"]["entities"]
    (wrong_type,) = ents["wrong_type"]["examples"]
    assert (wrong_type["gold"]["text"], wrong_type["gold"]["label"]) == ("Acme Corp", "Org")
    assert (wrong_type["predicted"]["label"], wrong_type["score"]) == ("Loc", pytest.approx(0.65))
    (both,) = ents["wrong_both"]["examples"]
    assert (both["gold"]["text"], both["predicted"]["text"]) == ("Rome", "and Rome")
    (missed,) = ents["missed"]["examples"]  # the same error twice: one example
    assert (missed["count"], missed["docs"], missed["predicted"], missed["score"]) == (2, [1, 5], None, None)
    rels = report["buckets"]["relations"]
    (reversed_,) = rels["reversed"]["examples"]
    assert reversed_["gold"]["head"]["text"] == "Anna Lee" and reversed_["predicted"]["head"]["text"] == "Globex"
    (endpoint,) = rels["wrong_endpoint"]["examples"]
    assert endpoint["gold"]["tail"]["label"] == "Org" and endpoint["predicted"]["tail"]["label"] == "Loc"
    (spurious,) = rels["spurious_entity"]["examples"]
    assert spurious["predicted"]["head"]["text"] == "works"
    # the context: a window of the gold and the predicted doc, the same text
    context = wrong_type["context"]
    assert context["gold"]["text"] == context["predicted"]["text"] == " ".join(CORPUS[0][0])
    assert len(context["gold"]["entities"]) == 4 and len(context["predicted"]["entities"]) == 5


def test_confusion_matrix(report):
    conf = report["confusion"]
    assert conf["labels"] == ["Loc", "Org", "Peop"]
    # rows: gold Loc, Org, Peop, spurious; columns: predicted Loc, Org, Peop, missed
    assert conf["counts"] == [
        [2, 0, 0, 4],
        [1, 2, 0, 0],
        [0, 0, 6, 0],
        [1, 1, 1, 0],
    ]


def test_calibration_bins(report):
    ents = report["calibration"]["entities"]
    assert ents["probabilities"] and (ents["count"], ents["correct"]) == (14, 10)
    assert [b["count"] for b in ents["bins"]] == [0, 1, 0, 0, 1, 1, 1, 2, 3, 5]
    assert [b["correct"] for b in ents["bins"]] == [0, 0, 0, 0, 0, 0, 0, 2, 3, 5]
    assert ents["bins"][9]["precision"] == 1.0 and ents["bins"][0]["precision"] is None
    assert ents["bins"][9]["mean_score"] == pytest.approx((0.95 + 0.92 + 0.91 + 0.97 + 0.93) / 5)
    rels = report["calibration"]["relations"]
    assert [b["count"] for b in rels["bins"]] == [0, 0, 1, 1, 1, 1, 1, 0, 1, 0]
    assert [b["correct"] for b in rels["bins"]] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    ece = (0.2 + 0.3 + 0.4 + 0.5 + 0.62 + (1 - 0.85)) / 6
    assert rels["ece"] == pytest.approx(ece, abs=1e-6)


def test_calibration_bin_edges_and_raw_scores():
    edges = calibration([(0.0, True), (0.3, True), (0.7, False), (0.99, True), (1.0, True)], n_bins=10)
    assert [b["count"] for b in edges["bins"]] == [1, 0, 0, 1, 0, 0, 0, 1, 0, 2]
    raw = calibration([(-2.0, False), (0.0, True), (6.0, True)], n_bins=4)  # SpERT.MT: class scores
    assert not raw["probabilities"] and raw["ece"] is None
    assert (raw["bins"][0]["lo"], raw["bins"][-1]["hi"]) == (-2.0, 6.0)
    assert [b["count"] for b in raw["bins"]] == [1, 1, 0, 1]
    assert calibration([], n_bins=3)["count"] == 0


def test_scores_agree_with_the_scorer(report):
    scorer = score_spert(make_examples())
    for name, prefix in (
        ("entities", "spert_ent"),
        ("relations_strict", "spert_rel"),
        ("relations_boundaries", "spert_rel_bound"),
    ):
        table = report["scores"][name]
        for metric in ("p", "r", "f"):
            assert table["micro"][metric] == pytest.approx(scorer[f"{prefix}_{metric}"])
            assert table["macro"][metric] == pytest.approx(scorer[f"{prefix}_macro_{metric}"])
        assert set(table["per_label"]) == set(scorer[f"{prefix}_per_type"])
        for label, row in table["per_label"].items():
            assert row["f"] == pytest.approx(scorer[f"{prefix}_per_type"][label]["f"])
    loc = report["scores"]["entities"]["per_label"]["Loc"]
    assert (loc["support"], loc["predicted"], loc["tp"]) == (6, 4, 2)
    # boundaries: the relation whose endpoint has the wrong type is right
    assert report["scores"]["relations_boundaries"]["micro"]["tp"] == 2


def test_symmetric_relations_are_not_reversed():
    words = "Anna met Bob .".split()
    corpus = [(words, [(0, 1, "Peop"), (2, 3, "Peop")], [(0, 1, "Meets")], [(0, 1, "Peop", 0.9), (2, 3, "Peop", 0.9)])]
    examples = [Example(predicted_doc(w, p, [(1, 0, "Meets", 0.7)]), make_doc(VOCAB, w, e, r)) for w, e, r, p in corpus]
    reversed_ = counts(analyse(examples), "relations")
    assert reversed_["reversed"] == 1 and sum(reversed_.values()) == 1
    report = analyse(examples, symmetric_relations=["Meets"])
    assert sum(counts(report, "relations").values()) == 0
    assert report["scores"]["relations_strict"]["micro"]["tp"] == 1


def test_other_tokenization_maps_like_the_scorer():
    """Predictions on another tokenization: a span that aligns is right, one
    that splits a gold token is a wrong boundary (overlap is by character)."""
    gold = make_doc(VOCAB, ["Acme-Corp", "in", "Oslo"], [(0, 1, "Org"), (2, 3, "Loc")], [])
    words, spaces = ["Acme", "-", "Corp", "in", "Oslo"], [False, False, True, True, True]
    pred = predicted_doc(words, [(0, 3, "Org", 0.9), (4, 5, "Peop", 0.8)], [], spaces=spaces)
    pred2 = predicted_doc(words, [(0, 1, "Org", 0.9)], [], spaces=spaces)
    report = analyse([Example(pred, gold), Example(pred2, gold)])
    assert report["scores"]["entities"]["micro"]["tp"] == 1
    ents = counts(report, "entities")
    assert ents == {"wrong_type": 1, "wrong_boundaries": 1, "wrong_both": 0, "spurious": 0, "missed": 1}
    scorer = score_spert([Example(pred, gold), Example(pred2, gold)])
    assert report["scores"]["entities"]["micro"]["f"] == pytest.approx(scorer["spert_ent_f"])


def spurious_corpus():
    """Spurious entities: "x" twice (0.2, 0.6), "y" once (0.9), "z" once (0.1)."""
    words = "a x b y c z d x".split()
    preds = [(1, 2, "Org", 0.2), (3, 4, "Org", 0.9), (5, 6, "Org", 0.1), (7, 8, "Org", 0.6)]
    return [(words, [], [], preds, [])]


def test_examples_most_frequent_first_then_by_score():
    report = analyse(make_examples(spurious_corpus()))
    examples = report["buckets"]["entities"]["spurious"]["examples"]
    assert [(e["predicted"]["text"], e["count"], e["score"]) for e in examples] == [
        ("x", 2, pytest.approx(0.6)),  # the occurrence with the highest score stands for both
        ("y", 1, pytest.approx(0.9)),
        ("z", 1, pytest.approx(0.1)),
    ]
    limited = analyse(make_examples(spurious_corpus()), max_examples=1)
    assert limited["buckets"]["entities"]["spurious"]["count"] == 4
    assert len(limited["buckets"]["entities"]["spurious"]["examples"]) == 1


def test_html_orders_examples_by_score_with_css_only():
    page = report_html(analyse(make_examples(spurious_corpus())))
    section = page[page.index('id="entities-spurious"') :]
    section = section[: section.index("</section>")]
    styles = re.findall(r'class="example" style="--count:(\d+);--desc:(\d+);--asc:(\d+)"', section)
    # by count: x (0.6), y (0.9), z (0.1); highest score first: y, x, z; lowest first: z, x, y
    assert styles == [("0", "1", "1"), ("1", "0", "2"), ("2", "2", "0")]
    assert section.count('type="radio"') == 3 and " checked" in section
    for order in ("desc", "asc"):
        assert f".by-{order}:checked ~ .examples > .example {{ order: var(--{order}); }}" in page
    # a bucket without scores (missed) has no order choice
    missed = analyse(make_examples([(["Oslo"], [(0, 1, "Loc")], [], [], [])]))
    page = report_html(missed)
    assert 'id="entities-missed"' in page and 'type="radio"' not in page


def test_cut_record_keeps_what_is_inside():
    record = {
        "text": "Ann met Bob in Oslo",
        "entities": [
            {"start": 0, "end": 3, "label": "P", "score": None},
            {"start": 8, "end": 11, "label": "P", "score": 0.5},
            {"start": 15, "end": 19, "label": "L", "score": 0.4},
        ],
        "relations": [
            {"head": 0, "tail": 1, "label": "R", "score": 1.0},
            {"head": 1, "tail": 2, "label": "S", "score": 0.3},
        ],
    }
    cut = cut_record(record, 8, 19)
    assert cut["text"] == "Bob in Oslo"
    assert [(e["start"], e["end"]) for e in cut["entities"]] == [(0, 3), (7, 11)]
    assert cut["relations"] == [{"head": 0, "tail": 1, "label": "S", "score": 0.3}]


# The HTML ----------------------------------------------------------------------------------


class Page(HTMLParser):
    """The tags, attributes and table cells of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: List[Tuple[str, Dict[str, str]]] = []
        self.tables: Dict[str, List[List[str]]] = {}
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table-{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def test_html_shows_the_numbers_of_the_json(report, tmp_path):
    write_report(report, tmp_path / "report.html", tmp_path / "report.json", title="model on gold")
    data = json.loads((tmp_path / "report.json").read_text(encoding="ascii"))
    assert data == json.loads(json.dumps(report))  # JSON-safe, nothing lost
    page = parse((tmp_path / "report.html").read_text(encoding="utf8"))
    for name in ("entities", "relations_strict", "relations_boundaries"):
        rows = {row[0]: row[1:] for row in page.tables[f"scores-{name}"][1:]}
        table = data["scores"][name]
        for label, values in [*table["per_label"].items(), ("micro", table["micro"])]:
            want = [str(values[c]) for c in ("support", "predicted", "tp", "fp", "fn")]
            assert rows[label] == want + [f"{100 * values[m]:.2f}" for m in ("p", "r", "f")]
        assert rows["macro"][-3:] == [f"{100 * table['macro'][m]:.2f}" for m in ("p", "r", "f")]
    confusion = page.tables["confusion-table"]
    assert [int(c) for row in confusion[1:] for c in row[1:]] == [c for row in data["confusion"]["counts"] for c in row]
    assert confusion[0][1:] == [*data["confusion"]["labels"], "(missed)"]
    for kind in ("entities", "relations"):
        shown = {row[0]: int(row[1]) for row in page.tables[f"buckets-{kind}"][1:]}
        assert shown == {b["description"]: b["count"] for b in data["buckets"][kind].values()}
    sections = {a["id"]: int(a["data-count"]) for tag, a in page.tags if tag == "section" and "data-count" in a}
    assert sections == {
        f"{k}-{n}": b["count"] for k in ("entities", "relations") for n, b in data["buckets"][k].items()
    }
    for kind in ("entities", "relations"):
        rows = page.tables[f"calibration-table-{kind}"][1:]
        bins = data["calibration"][kind]["bins"]
        assert [(int(r[1]), int(r[2])) for r in rows] == [(b["count"], b["correct"]) for b in bins]


HOSTILE_LABEL = "<script>alert(1)</script>\u202eOrg"
HOSTILE_WORDS = ["<script>alert(2)</script>", "works", "for", "\u202eAcme", '"><img src=x onerror=alert(3)>', "."]


def test_html_escapes_hostile_text_and_labels(tmp_path):
    corpus = [
        (
            HOSTILE_WORDS,
            [(0, 1, "Peop"), (3, 4, HOSTILE_LABEL)],
            [(0, 1, "<b>Work_For</b>")],
            [(0, 1, "Peop", 0.9), (3, 4, "Loc\u202e<i>", 0.8), (4, 5, HOSTILE_LABEL, 0.7)],
            [(0, 1, "<b>Work_For</b>", 0.6)],
        )
    ]
    report = analyse(make_examples(corpus))
    page = report_html(report, title="<script>title</script>\u202e")
    parsed = parse(page)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "link", "b", "i"}
    for tag, attrs in parsed.tags:
        assert not any(name.startswith("on") or name == "src" for name in attrs), (tag, attrs)
        assert not attrs.get("href") or attrs["href"].startswith("#")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;Work_For&lt;/b&gt;" in page
    # outside the renderer's figures (tested in test_render.py), a bidi control is in a <bdi> (or, in the
    # <title>, between FSI and PDI)
    outside = re.sub(r"<figure.*?</figure>", "", page, flags=re.S)
    assert "<title>\u2068&lt;script&gt;title&lt;/script&gt;\u202e\u2069</title>" in outside
    outside = outside.replace("\u2068&lt;script&gt;title&lt;/script&gt;\u202e\u2069", "")
    for match in re.finditer("\u202e", outside):
        before = outside[: match.start()]
        assert before.rfind("<bdi>") > before.rfind("</bdi>"), outside[match.start() - 80 : match.start() + 20]
    # the hostile label's errors are counted like any other
    assert report["buckets"]["entities"]["wrong_type"]["count"] == 1
    assert report["buckets"]["entities"]["spurious"]["count"] == 1
