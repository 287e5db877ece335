"""`render` (spacy_spert/apps/render/ and the CLI command): entities with labels
and scores (overlapping ones stacked), relations as directed arcs with
scores, the same drawing from a Doc and from its record, figures per sentence
or paragraph joined where a relation crosses them, rows that wrap (an arc
across rows in two parts), right-to-left layout, escaping of every text,
control characters, a 20,000-token doc, Jupyter, record errors naming the
field, and the command from predict's JSONL, a .spacy file and a model."""

import json
import re
import sys
import types
from html.parser import HTMLParser

import pytest
import spacy
from spacy.tokens import DocBin, SpanGroup
from typer.testing import CliRunner

from spacy_spert import doc_to_record, make_relation, render
from spacy_spert.apps.render import check_record, render_table
from spacy_spert.apps.render.layout import CHAR_W
from spacy_spert.cli import app

TEXT = "Priya Raman, an analyst at Kestrel Labs, lives in Tampere."
TEXTS = ["Mary Smith works for Acme Corp in Paris .", "John Doe lives in London ."]
RECORD = {
    "text": TEXT,
    "entities": [
        {"start": 0, "end": 11, "label": "Peop", "score": 0.92},
        {"start": 27, "end": 39, "label": "Org", "score": 0.95},
        {"start": 50, "end": 57, "label": "Loc", "score": 0.94},
        {"start": 27, "end": 34, "label": "Other", "score": 0.41},  # nested in "Kestrel Labs"
    ],
    "relations": [
        {"head": 0, "tail": 1, "label": "Work_For", "score": 0.99},
        {"head": 0, "tail": 2, "label": "Live_In", "score": 0.98},
    ],
}


class Elements(HTMLParser):
    """Every element with its attributes and its own text; checks nesting."""

    VOID = frozenset({"meta", "br", "rect", "path", "img", "input"})

    def __init__(self, markup):
        super().__init__(convert_charrefs=True)
        self.elements, self.stack, self.errors = [], [], []
        self.feed(markup)
        self.close()
        assert not self.errors and not self.stack, (self.errors[:3], self.stack[-3:])

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "text": "", **dict(attrs)}
        self.elements.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "text": "", **dict(attrs)})

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1]["tag"] != tag:
            self.errors.append(f"</{tag}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"] += data

    def find(self, tag, cls=None):
        return [e for e in self.elements if e["tag"] == tag and (cls is None or cls in e.get("class", "").split())]


def words(markup):
    return [e["text"] for e in Elements(markup).find("text", "spert-word")]


def test_entities_with_labels_scores_and_stacked_overlaps():
    page = Elements(render(RECORD))
    groups = page.find("g", "spert-entity")
    assert [(g["data-label"], g["data-score"]) for g in groups] == [
        ("Peop", "0.92"),
        ("Org", "0.95"),
        ("Loc", "0.94"),
        ("Other", "0.41"),
    ]
    # Each label is a bidi isolate (FSI ... PDI), so it cannot reorder its score.
    assert [e["text"] for e in page.find("text", "spert-entity-label")] == [
        "\u2068Peop\u2069 0.92",
        "\u2068Org\u2069 0.95",
        "\u2068Loc\u2069 0.94",
        "\u2068Other\u2069 0.41",
    ]
    # The nested "Kestrel" entity is drawn in a second slot, below "Kestrel Labs".
    bars = [e for e in page.elements if e["tag"] == "rect" and e.get("height") == "4"]
    y = {float(b["y"]) for b in bars}
    assert len(y) == 2
    assert "Kestrel" in "".join(words(render(RECORD)))


def test_relations_are_directed_labelled_arcs():
    markup = render(RECORD)
    page = Elements(markup)
    arcs = page.find("g", "spert-arc")
    assert [(a["data-head"], a["data-tail"], a["data-label"], a["data-score"]) for a in arcs] == [
        ("0", "1", "Work_For", "0.99"),
        ("0", "2", "Live_In", "0.98"),
    ]
    assert [e["text"] for e in page.find("text", "spert-arc-label")] == [
        "\u2068Work_For\u2069 0.99",
        "\u2068Live_In\u2069 0.98",
    ]
    # One arrowhead per arc, at the tail: its tip is above the tail entity's words.
    tips = re.findall(r'class="spert-arrowhead" d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+ L([\d.]+),', markup)
    assert len(tips) == 2
    x_of = {w["text"]: float(w["x"]) for w in page.find("text", "spert-word")}
    assert x_of["Kestrel"] <= float(tips[0]) <= x_of["Labs"] + 4 * CHAR_W
    assert x_of["Tampere"] <= float(tips[1]) <= x_of["Tampere"] + 7 * CHAR_W
    # Nested arcs: the wider one (Live_In) is drawn higher.
    label_y = [float(e["y"]) for e in page.find("text", "spert-arc-label")]
    assert label_y[1] < label_y[0]


def test_doc_and_its_record_render_the_same():
    nlp = spacy.blank("en")
    doc = nlp(TEXT)
    spans = [doc.char_span(e["start"], e["end"], label=e["label"]) for e in RECORD["entities"]]
    doc.spans["sc"] = SpanGroup(doc, name="sc", spans=spans, attrs={"scores": [e["score"] for e in RECORD["entities"]]})
    doc._.relations = [
        make_relation(spans[r["head"]], spans[r["tail"]], r["label"], r["score"]) for r in RECORD["relations"]
    ]
    assert render(doc) == render(doc_to_record(doc))
    assert render(doc) == render(dict(RECORD, entities=doc_to_record(doc)["entities"]))


def sentence_doc():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("Anna Lee works for Acme. It is in Oslo. Bo Li lives in Lund.")
    ents = [doc[0:2], doc[4:5], doc[9:10], doc[11:13], doc[15:16]]
    for span, label in zip(ents, ["Peop", "Org", "Loc", "Peop", "Loc"]):
        span.label_ = label
    ents = [doc.char_span(s.start_char, s.end_char, label=s.label_) for s in ents]
    doc.spans["sc"] = SpanGroup(doc, name="sc", spans=ents, attrs={"scores": [0.9] * 5})
    return doc, ents


def test_one_figure_per_sentence_joined_where_a_relation_crosses():
    doc, ents = sentence_doc()
    doc._.relations = [make_relation(ents[3], ents[4], "Live_In", 0.8)]
    assert Elements(render(doc)).find("figure").__len__() == 3
    doc._.relations = [
        make_relation(ents[1], ents[2], "OrgBased_In", 0.7),
        make_relation(ents[3], ents[4], "Live_In", 0.8),
    ]
    figures = Elements(render(doc)).find("figure")
    assert len(figures) == 2  # sentences 1 and 2 joined by OrgBased_In
    assert len(Elements(render(doc, split="none")).find("figure")) == 1


def test_paragraphs_of_a_record():
    record = {
        "text": "Anna Lee works for Acme.\n\n  \nBo Li lives in Lund.\nNext line.",
        "entities": [],
        "relations": [],
    }
    page = Elements(render(record))
    assert len(page.find("figure")) == 2
    # A single newline starts a new row within the figure.
    ys = {w["text"]: float(w["y"]) for w in page.find("text", "spert-word")}
    assert ys["Next"] > ys["Lund."] and ys["Bo"] == ys["Lund."]


def test_rows_wrap_and_cross_row_arcs_are_drawn_in_two_parts():
    markup = render(RECORD, max_width=200)
    page = Elements(markup)
    row_ys = sorted({float(w["y"]) for w in page.find("text", "spert-word")})
    assert len(row_ys) >= 3
    for w in page.find("text", "spert-word"):
        assert float(w["x"]) + float(w["textlength"]) <= 200 + 1e-6
    live_in = next(a for a in page.find("g", "spert-arc") if a["data-label"] == "Live_In")
    part_labels = re.findall(r'data-label="Live_In".*?</g>', markup)[0].count('class="spert-arc-label"')
    assert part_labels == 2 and live_in["data-tail"] == "2"


def test_right_to_left_figure():
    text = "\u05de\u05e8\u05d9 \u05e2\u05d5\u05d1\u05d3\u05ea \u05d1 Acme Corp \u05d1\u05e4\u05e8\u05d9\u05d6 ."
    start = text.index("Acme")
    record = {
        "text": text,
        "entities": [{"start": start, "end": start + 9, "label": "Org", "score": 0.5}],
        "relations": [],
    }
    page = Elements(render(record))
    assert page.find("figure")[0]["dir"] == "rtl"
    x = [(w["text"], float(w["x"])) for w in page.find("text", "spert-word")]
    first, acme, corp = x[0], dict(x)["Acme"], dict(x)["Corp"]
    assert first[1] == max(v for _, v in x)  # the first word is rightmost
    assert acme < corp  # an English run inside keeps its left-to-right order
    assert Elements(render(dict(RECORD))).find("figure")[0]["dir"] == "ltr"


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script> & \"quotes\" 'single' </svg></figure>",
        "</textarea><img src=x onerror=alert(1)>",
    ],
)
def test_every_text_is_escaped(text):
    record = {
        "text": text,
        "entities": [{"start": 0, "end": 8, "label": "<b>L</b>", "score": 0.5}],
        "relations": [{"head": 0, "tail": 0, "label": "</text><script>x</script>", "score": 0.5}],
        "title": "<i>title</i>",
    }
    markup = render(record, table=True, page=True)
    page = Elements(markup)
    assert not page.find("script") and not page.find("img") and not page.find("b") and not page.find("i")
    assert "".join(words(markup)) == "".join(text.split())
    assert page.find("g", "spert-entity")[0]["data-label"] == "<b>L</b>"


def test_control_characters_and_surrogates_are_shown_not_sent():
    text = "a\x00b \x07c\x1b[31m d\x7fe f\x85g h\ud800i"
    markup = render({"text": text, "entities": [], "relations": []}, table=True)
    markup.encode("utf8")  # no lone surrogate
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", markup)
    shown = "".join(words(markup))
    assert "\u2400" in shown and "\u2407" in shown and "\u241b" in shown and "\u2421" in shown and "\ufffd" in shown


def test_long_doc_of_20000_tokens():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp(" ".join(["Anna Lee works for Acme in Oslo ."] * 2500))
    assert len(doc) == 20_000
    ents = [doc[i : i + 2] for i in range(0, len(doc), 8)]
    doc.spans["sc"] = SpanGroup(
        doc,
        name="sc",
        spans=[doc.char_span(s.start_char, s.end_char, label="Peop") for s in ents],
        attrs={"scores": [0.9] * len(ents)},
    )
    doc._.relations = [make_relation(doc[i : i + 2], doc[i + 5 : i + 6], "Live_In", 0.8) for i in range(0, len(doc), 8)]
    markup = render(doc)
    page = Elements(markup)
    assert len(page.find("figure")) == 2500
    assert len(page.find("g", "spert-arc")) == 2500
    assert len(page.find("text", "spert-word")) == 20_000
    # Without sentences: one figure, many rows, none wider than max_width.
    record = doc_to_record(doc)
    markup = render(record, split="none")
    ws = Elements(markup).find("text", "spert-word")
    assert max(float(w["x"]) + float(w["textlength"]) for w in ws) <= 960 + 1e-6
    assert len({w["y"] for w in ws}) >= len(record["text"]) // 100  # rows of at most 100 columns


def test_long_word_is_cut_into_rows():
    markup = render({"text": "x" * 500, "entities": [], "relations": []}, max_width=300)
    assert "".join(words(markup)) == "x" * 500
    assert all(float(w["x"]) + float(w["textlength"]) <= 300 for w in Elements(markup).find("text", "spert-word"))


def test_page_and_jupyter(monkeypatch):
    page = render(RECORD, page=True, title="Mine")
    assert page.startswith("<!DOCTYPE html>") and "<title>Mine</title>" in page and '<meta charset="utf-8">' in page
    shown = []
    ipython = types.ModuleType("IPython")
    display = types.ModuleType("IPython.display")
    display.HTML = lambda markup: ("HTML", markup)
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    assert render(RECORD, jupyter=True) is None
    assert shown[0][1].startswith('<span class="tex2jax_ignore"><div class="spert-render">')


def test_colors_from_displacy_and_the_argument():
    markup = render(RECORD, colors={"Peop": "#123456"})
    assert 'fill="#123456"' in markup
    assert 'fill="#7aecec"' in markup  # displaCy's ORG colour for "Org"


def test_table():
    page = Elements(render_table(RECORD))
    rows = page.find("tr")
    assert len(rows) == 2 + 4 + 2


@pytest.mark.parametrize(
    "record,message",
    [
        ([], "must be a JSON object"),
        ({"entities": [], "relations": []}, "no field 'text'"),
        ({"text": "a b", "relations": []}, "no field 'entities'"),
        ({"text": "a b", "entities": {}, "relations": []}, "field 'entities' must be a list"),
        (
            {"text": "a b", "entities": [{"start": 0, "end": 9, "label": "X"}], "relations": []},
            "entities[0]: 'start'/'end' = 0/9",
        ),
        ({"text": "a b", "entities": [{"start": 0, "end": 1}], "relations": []}, "entities[0]: no field 'label'"),
        (
            {"text": "a b", "entities": [{"start": 0, "end": 1, "label": "X", "score": "high"}], "relations": []},
            "entities[0]: 'score'",
        ),
        (
            {
                "text": "a b",
                "entities": [{"start": 0, "end": 1, "label": "X"}],
                "relations": [{"head": 0, "tail": 1, "label": "R"}],
            },
            "relations[0]: 'tail' = 1 is not an index",
        ),
    ],
)
def test_record_errors_name_the_field(record, message):
    with pytest.raises(ValueError) as e:
        check_record(record)
    assert message in str(e.value)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_command_from_jsonl_and_spacy(tmp_path):
    jsonl = tmp_path / "predictions.jsonl"
    jsonl.write_text(json.dumps(RECORD) + "\n\n" + json.dumps(dict(RECORD, id="b")) + "\n", encoding="utf8")
    result = invoke("render", jsonl, tmp_path / "out.html")
    assert result.exit_code == 0, result.output
    page = Elements((tmp_path / "out.html").read_text(encoding="utf8"))
    assert len(page.find("g", "spert-arc")) == 4 and len(page.find("table")) == 4
    doc, _ = sentence_doc()
    DocBin(store_user_data=True, docs=[doc]).to_disk(tmp_path / "docs.spacy")
    result = invoke("render", tmp_path / "docs.spacy", tmp_path / "docs.html", "--no-table")
    assert result.exit_code == 0, result.output
    page = Elements((tmp_path / "docs.html").read_text(encoding="utf8"))
    assert len(page.find("g", "spert-entity")) == 5 and not page.find("table")


def test_command_errors_name_file_and_line(tmp_path):
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(json.dumps(RECORD) + "\n\n" + json.dumps({"text": "no predictions"}) + "\n", encoding="utf8")
    result = invoke("render", jsonl, tmp_path / "out.html")
    assert result.exit_code == 1
    assert f"{jsonl}: line 3: no field 'entities'" in result.output and "--model" in result.output
    assert not (tmp_path / "out.html").exists()
    result = invoke("render", tmp_path / "input.txt", tmp_path / "out.html")
    assert result.exit_code == 1 and "expected predict's JSONL output" in result.output


def test_command_with_a_model(tmp_path, small_model_dir, reference):
    model_dir = small_model_dir
    result = invoke("render", model_dir, tmp_path / "texts.html", "--text", TEXTS[0], "--text", TEXTS[1])
    assert result.exit_code == 0, result.output
    markup = (tmp_path / "texts.html").read_text(encoding="utf8")
    want = [doc_to_record(reference(t)) for t in TEXTS[:2]]
    assert markup.count('class="spert-arc"') == sum(len(r["relations"]) for r in want)
    assert markup.count('class="spert-entity"') == sum(len(r["entities"]) for r in want)
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:2]), encoding="utf8")
    result = invoke("render", jsonl, tmp_path / "tagged.html", "--model", model_dir)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tagged.html").read_text(encoding="utf8") == markup


@pytest.fixture(scope="module")
def reference(small_model_dir):
    return spacy.load(small_model_dir)


def test_a_bidi_override_in_a_label_cannot_reorder_its_score():
    """A label holding U+202E (right-to-left override) stays inside its
    isolate in the SVG tags and a <bdi> in the tables, so "0.90" is not shown
    as "09.0"."""
    record = {
        "text": "Anna works for Acme .",
        "entities": [
            {"start": 0, "end": 4, "label": "Pe\u202eop", "score": 0.9},
            {"start": 15, "end": 19, "label": "Org", "score": 0.8},
        ],
        "relations": [{"head": 0, "tail": 1, "label": "Work\u202e_For", "score": 0.9}],
    }
    markup = render(record, table=True)
    page = Elements(markup)
    assert next(e["text"] for e in page.find("text", "spert-entity-label")) == "\u2068Pe\u202eop\u2069 0.90"
    assert [e["text"] for e in page.find("text", "spert-arc-label")] == ["\u2068Work\u202e_For\u2069 0.90"]
    assert "<td><bdi>Pe\u202eop</bdi></td>" in markup and "<td><bdi>Work\u202e_For</bdi></td>" in markup


def test_entity_text_in_a_tooltip_cannot_reorder_the_tag():
    """The tooltips set the entity text next to the label and score: the text
    is isolated too, so an override in the text stays inside."""
    text = "Ann\u202ea works for Acme ."
    record = {
        "text": text,
        "entities": [
            {"start": 0, "end": 5, "label": "Peop", "score": 0.9},
            {"start": 16, "end": 20, "label": "Org", "score": 0.8},
        ],
        "relations": [{"head": 0, "tail": 1, "label": "Work_For", "score": 0.7}],
    }
    page = Elements(render(record))
    titles = [e["text"] for e in page.find("title")]
    assert "\u2068Ann\u202ea\u2069: \u2068Peop\u2069 0.90" in titles
    assert "\u2068Ann\u202ea\u2069 \u2192 \u2068Work_For\u2069 0.70 \u2192 \u2068Acme\u2069" in titles


@pytest.mark.parametrize(
    "line,message",
    [
        (b'{"text": "a", "entities": [], "relations": [], "x": NaN}', "NaN is not a JSON value"),
        (b'{"text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"text": "\\udc00", "entities": [], "relations": []}', "an unpaired surrogate U+DC00"),
    ],
    ids=["nan", "deep", "surrogate"],
)
def test_command_names_a_hostile_line(tmp_path, line, message):
    jsonl = tmp_path / "preds.jsonl"
    jsonl.write_bytes(json.dumps(RECORD).encode() + b"\n" + line + b"\n")
    result = invoke("render", jsonl, tmp_path / "out.html")
    assert result.exit_code == 1 and not (tmp_path / "out.html").exists()
    assert result.stderr.startswith(f"error: {jsonl}: line 2: not JSON this reads: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1
