"""Label Studio's task format (spacy_spert/io/label_studio_tasks.py): the labeling config parser and the
label mapping, predictions as Label Studio stores them (it validates nothing, so these tests do), and the
round trip ``predict --format label-studio`` -> ``import label-studio --predictions``, which gives the same
entities and relations, with non-BMP emoji and combining characters in the text (offsets in code points)."""

import json

import pytest
import spacy
from spacy.tokens import SpanGroup
from typer.testing import CliRunner

from spacy_spert import make_relation
from spacy_spert.apps.predict import predict
from spacy_spert.cli import app
from spacy_spert.io.importers import import_docs
from spacy_spert.io.label_studio_tasks import (
    DEFAULT_CONFIG,
    LabelConfig,
    LabelConfigError,
    model_version,
    parse_label_config,
    read_label_config,
    record_to_prediction,
    record_to_task,
)
from spacy_spert.io.records import doc_to_record

runner = CliRunner()

# Label Studio's "Relation Extraction" template, with this repository's labels.
RELATION_TEMPLATE = """<View>
  <Relations>
    <Relation value="Work_For"/>
    <Relation value="Live_In"/>
    <Relation value="OrgBased_In"/>
  </Relations>
  <Labels name="label" toName="text">
    <Label value="Peop" background="red"/>
    <Label value="Org" background="darkorange"/>
    <Label value="Loc" background="orange"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


def check_prediction(prediction, text, config=DEFAULT_CONFIG):
    """What Label Studio would need and does not check: unique region ids, relations between regions of the
    same result, offsets in code points whose slice is the region's text, labels of the config, a direction,
    scores that are numbers."""
    assert set(prediction) == {"model_version", "score", "result"}
    assert isinstance(prediction["score"], float)
    regions = {}
    for item in prediction["result"]:
        if item["type"] == "labels":
            assert item["id"] not in regions
            regions[item["id"]] = item
            assert (item["from_name"], item["to_name"]) == (config.from_name, config.to_name)
            value = item["value"]
            assert text[value["start"] : value["end"]] == value["text"]
            assert len(value["labels"]) == 1
            assert config.entity_labels is None or value["labels"][0] in config.entity_labels
            assert isinstance(item["score"], float)
    for item in prediction["result"]:
        if item["type"] == "relation":
            assert item["from_id"] in regions and item["to_id"] in regions and item["from_id"] != item["to_id"]
            assert item["direction"] == "right" and len(item["labels"]) == 1
            assert config.relation_labels is None or item["labels"][0] in config.relation_labels
            assert isinstance(item["score"], float)
    scores = [item["score"] for item in prediction["result"]]
    assert prediction["score"] == (min(scores) if scores else 1.0)
    return regions


# ---------------------------------------------------------------------------
# The labeling config


def test_relation_template():
    config = parse_label_config(RELATION_TEMPLATE)
    assert (config.from_name, config.to_name, config.text_key) == ("label", "text", "text")
    assert config.entity_labels == ("Peop", "Org", "Loc")
    assert config.relation_labels == ("Work_For", "Live_In", "OrgBased_In")
    assert config.notes == ()
    report = config.check_labels(["Peop", "Org", "Loc"], ["Work_For", "Live_In", "OrgBased_In"])
    assert report["warnings"] == []
    assert report["entities"] == {
        "mapped": {"Peop": "Peop", "Org": "Org", "Loc": "Loc"},
        "model_only": [],
        "config_only": [],
    }


def test_names_case_and_further_labels():
    config = parse_label_config(
        '<view><labels NAME="ner" toname="doc"><label value="PER"/></labels>'
        '<Text name="doc" value="$sentence"/><Labels name="other" toName="doc"><Label value="X"/></Labels>'
        '<Labels name="img" toName="image"><Label value="Y"/></Labels></view>'
    )
    assert (config.from_name, config.to_name, config.text_key) == ("ner", "doc", "sentence")
    assert config.entity_labels == ("PER",)  # not the other <Labels>' labels
    assert config.relation_labels == ()  # no <Relations>
    assert config.notes == ('the labeling config\'s <Labels name="other"> is passed over: this model fills '
                            '<Labels name="ner"> only',)  # fmt: skip


def test_label_mapping_and_its_report():
    config = parse_label_config(
        '<View><Relations><Relation value="work for"/><Relation value="Kills"/></Relations>'
        '<Labels name="label" toName="text"><Label value="PEOP"/><Label value="Org"/><Label value="Misc"/>'
        '</Labels><Text name="text" value="$text"/></View>'
    )
    assert config.entity_label("Peop") == "PEOP" and config.entity_label("Org") == "Org"
    assert config.entity_label("Loc") is None
    assert config.relation_label("Work_For") == "work for" and config.relation_label("Live_In") is None
    report = config.check_labels(["Peop", "Org", "Loc"], ["Work_For", "Live_In"])
    assert report["entities"] == {
        "mapped": {"Peop": "PEOP", "Org": "Org"},
        "model_only": ["Loc"],
        "config_only": ["Misc"],
    }
    assert report["relations"]["model_only"] == ["Live_In"] and report["relations"]["config_only"] == ["Kills"]
    assert report["warnings"] == [
        "entity labels mapped by another spelling: Peop -> PEOP",
        'model entity labels not in the labeling config\'s <Labels name="label">, left out of predictions: Loc',
        "labeling config entity labels the model never predicts: Misc",
        "relation labels mapped by another spelling: Work_For -> work for",
        "model relation labels not in the labeling config's <Relations>, left out of predictions: Live_In",
        "labeling config relation labels the model never predicts: Kills",
    ]
    no_relations = parse_label_config('<View><Labels name="l" toName="t"/><Text name="t" value="$t"/></View>')
    assert no_relations.check_labels([], ["Work_For"])["warnings"] == [
        "the labeling config has no <Relation> labels: the model's relations (Work_For) are left out of predictions"
    ]


def test_two_labels_of_one_spelling_map_only_exactly():
    config = LabelConfig(entity_labels=("ORG", "Org"))
    assert config.entity_label("Org") == "Org" and config.entity_label("org") is None


@pytest.mark.parametrize(
    "xml,message",
    [
        ("", "the labeling config is empty"),
        ("<View><Labels", "not XML"),
        ('<!DOCTYPE v [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><View>&b;</View>', "a DTD"),
        ('<!DOCTYPE v SYSTEM "file:///etc/passwd"><View/>', "a DTD"),
        ('<View><Choices name="c" toName="t"/><Text name="t" value="$t"/></View>', "no <Labels name=... toName"),
        ('<View><Labels name="l" toName="img"/><Image name="img" value="$i"/></View>', "no <Labels name=... toName"),
        ('<View><Labels name="l" toName="t"/><Text name="t" value="plain"/></View>', 'expected "$KEY"'),
        ('<View><Labels name="l" toName="t"/><Text name="t" value="$u" valueType="url"/></View>', "from a URL"),
        ('<?xml version="1.0" encoding="latin-1"?><View><Labels name="l" toName="t"/>', "not XML"),
    ],
    ids=[
        "empty",
        "not-xml",
        "billion-laughs",
        "external-dtd",
        "no-labels",
        "labels-on-image",
        "literal-text",
        "url-text",
        "unclosed",
    ],
)
def test_bad_configs(xml, message):
    with pytest.raises(LabelConfigError, match=message.replace("$", r"\$")) as info:
        parse_label_config(xml)
    assert len(str(info.value).splitlines()) == 1


def test_non_ascii_labels_whatever_the_declared_encoding():
    xml = '<?xml version="1.0" encoding="latin-1"?><View><Labels name="l" toName="t"><Label value="Zoë ✓"/>'
    config = parse_label_config(xml + '</Labels><Text name="t" value="$t"/></View>')
    assert config.entity_labels == ("Zoë ✓",)


def test_read_label_config_names_the_file(tmp_path):
    path = tmp_path / "config.xml"
    path.write_bytes(b"\xef\xbb\xbf" + RELATION_TEMPLATE.encode("utf8"))  # a BOM, as Notepad writes
    assert read_label_config(path).entity_labels == ("Peop", "Org", "Loc")
    path.write_text("<View/>", encoding="utf8")
    with pytest.raises(LabelConfigError, match=rf"^{path}: the labeling config has no <Labels"):
        read_label_config(path)


# ---------------------------------------------------------------------------
# Predictions


# Non-BMP emoji (one code point, two UTF-16 units) and combining accents before and inside entities.
TEXT = "🙂🙂 Zoë Ba\u0301ker work for Acme 🚀 Corp in Bogota\u0301 ."


def scored_doc(nlp, text, entities, relations):
    """A doc with entities (char start, end, label, score) and relations (head, tail, label, score)."""
    doc = nlp.make_doc(text)
    spans = [doc.char_span(start, end, label=label) for start, end, label, _ in entities]
    assert all(span is not None for span in spans)
    doc.spans["sc"] = SpanGroup(doc, name="sc", spans=spans, attrs={"scores": [score for *_, score in entities]})
    doc._.relations = [make_relation(spans[h], spans[t], label, score) for h, t, label, score in relations]
    return doc


def example_doc(nlp):
    zoe = TEXT.index("Zoë")
    acme = TEXT.index("Acme")
    bogota = TEXT.index("Bogota")
    return scored_doc(
        nlp,
        TEXT,
        [
            (zoe, zoe + len("Zoë Ba\u0301ker"), "Peop", 0.9),
            (acme, acme + len("Acme 🚀 Corp"), "Org", 0.8),
            (acme, acme + 4, "Org", 0.3),  # overlapping
            (bogota, bogota + len("Bogota\u0301"), "Loc", 0.95),
        ],
        [(0, 1, "Work_For", 0.7), (1, 3, "OrgBased_In", 0.6), (0, 3, "Live_In", 0.2)],
    )


def test_prediction_of_a_record():
    nlp = spacy.blank("en")
    record = doc_to_record(example_doc(nlp))
    prediction = record_to_prediction(record, DEFAULT_CONFIG, "v1")
    regions = check_prediction(prediction, TEXT)
    assert prediction["model_version"] == "v1" and prediction["score"] == 0.2
    assert list(regions) == ["e0", "e1", "e2", "e3"]
    zoe = regions["e0"]["value"]
    # code points: two emoji and a space before "Zoë" are 3, not 5 (UTF-16) or 9 (UTF-8)
    assert (zoe["start"], zoe["text"], zoe["labels"]) == (3, "Zoë Ba\u0301ker", ["Peop"])
    relations = [item for item in prediction["result"] if item["type"] == "relation"]
    assert relations[0] == {
        "type": "relation",
        "from_id": "e0",
        "to_id": "e1",
        "direction": "right",
        "labels": ["Work_For"],
        "score": 0.7,
    }
    assert prediction == record_to_prediction(record, DEFAULT_CONFIG, "v1")  # the same ids every time


def test_prediction_leaves_out_labels_the_config_lacks():
    nlp = spacy.blank("en")
    config = parse_label_config(
        '<View><Relations><Relation value="work for"/></Relations><Labels name="ner" toName="doc">'
        '<Label value="PEOP"/><Label value="Org"/></Labels><Text name="doc" value="$t"/></View>'
    )
    prediction = record_to_prediction(doc_to_record(example_doc(nlp)), config, "v1")
    regions = check_prediction(prediction, TEXT, config)
    assert [r["value"]["labels"] for r in regions.values()] == [["PEOP"], ["Org"], ["Org"]]  # Loc left out
    relations = [(r["from_id"], r["to_id"], r["labels"]) for r in prediction["result"] if r["type"] == "relation"]
    assert relations == [("e0", "e1", ["work for"])]  # OrgBased_In unknown; Live_In's tail (Loc) left out
    assert prediction["score"] == 0.3


def test_task_carries_fields_under_the_config_key():
    nlp = spacy.blank("en")
    record = doc_to_record(scored_doc(nlp, "Bo Li .", [], []))
    config = LabelConfig(text_key="sentence")
    task = record_to_task(record, config, "v", {"id": 7, "text": "Bo Li .", "meta": {"a": 1}}, "text")
    assert task == {
        "data": {"id": 7, "meta": {"a": 1}, "sentence": "Bo Li ."},
        "predictions": [{"model_version": "v", "score": 1.0, "result": []}],
    }


def test_round_trip_through_the_importer(tmp_path):
    """record -> Label Studio task -> import label-studio --predictions: the same entities (code-point
    offsets, labels) and relations."""
    nlp = spacy.blank("en")
    doc = example_doc(nlp)
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([record_to_task(doc_to_record(doc), version="v")], ensure_ascii=False), "utf8")
    docs, report = import_docs("label-studio", path, predictions=True)
    assert len(docs) == 1 and report.from_predictions == 1 and not report.expanded and not report.dropped
    assert same_annotations(docs[0], doc)


def same_annotations(got, want, key="sc"):
    ents = lambda d: sorted((s.start_char, s.end_char, s.label_) for s in d.spans[key])  # noqa: E731
    rels = lambda d: sorted(  # noqa: E731
        (r["head_start"], r["head_end"], r["tail_start"], r["tail_end"], r["label"]) for r in d._.relations
    )
    assert got.text == want.text
    assert ents(got) == ents(want)
    assert rels(got) == rels(want)
    return True


# ---------------------------------------------------------------------------
# predict --format label-studio -> import --predictions, with the tiny model

TEXTS = [
    "🙂 Mary Smith work for Acme Corp in Paris .",
    "John Doe lives in Lo\u0301ndon .",
    "",
    "Globex , a firm in Berlin , hired Anna Lee 🚀 .",
]


def test_predict_label_studio_round_trip(small_model_dir, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"id": k, "text": t}) + "\n" for k, t in enumerate(TEXTS)), "utf8")
    predict(small_model_dir, inputs, tmp_path / "records.jsonl")
    report = predict(small_model_dir, inputs, tmp_path / "tasks.json", output_format="label-studio")
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text("utf8").splitlines()]
    tasks = json.loads((tmp_path / "tasks.json").read_text("utf8"))  # one JSON list, as Label Studio imports
    assert [task["data"] for task in tasks] == [{"id": k, "text": t} for k, t in enumerate(TEXTS)]
    version = model_version(spacy.load(small_model_dir))
    assert tasks[0]["predictions"][0]["model_version"] == version
    for task, record in zip(tasks, records):
        assert task["predictions"] == [record_to_prediction(record, DEFAULT_CONFIG, version)]
        check_prediction(task["predictions"][0], record["text"])
    n_entities = sum(len(r["entities"]) for r in records)
    n_relations = sum(len(r["relations"]) for r in records)
    assert n_entities >= 4 and n_relations >= 1  # a real test, not empty lists
    assert (report.n_entities, report.n_relations) == (n_entities, n_relations)

    docs, imported = import_docs("label-studio", tmp_path / "tasks.json", predictions=True)
    assert imported.from_predictions == 3 and imported.skipped == {"empty texts": 1}
    assert not imported.expanded and not imported.dropped
    texts = [t for t in TEXTS if t]
    assert [doc.text for doc in docs] == texts
    assert [doc.user_data["orig_id"] for doc in docs] == ["0", "1", "3"]  # no task ids: their positions
    for doc, record in zip(docs, [r for r in records if r["text"]]):
        got = doc_to_record(doc)
        strip = lambda items, keys: [tuple(x[k] for k in keys) for x in items]  # noqa: E731
        assert strip(got["entities"], ("start", "end", "label")) == strip(record["entities"], ("start", "end", "label"))
        assert strip(got["relations"], ("head", "tail", "label")) == strip(
            record["relations"], ("head", "tail", "label")
        )

    # without --predictions they are counted, not imported silently
    with pytest.raises(
        ValueError, match=r"nothing to import \(4 tasks with only predictions \(import them with --predictions\)\)"
    ):
        import_docs("label-studio", tmp_path / "tasks.json")


def test_predict_label_studio_cli_with_a_label_config(small_model_dir, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"text": TEXTS[0]}) + "\n", "utf8")
    config = tmp_path / "config.xml"
    config.write_text(
        '<View><Labels name="ner" toName="doc"><Label value="PEOP"/><Label value="Misc"/></Labels>'
        '<Relations><Relation value="Work_For"/></Relations><Text name="doc" value="$sentence"/></View>',
        "utf8",
    )
    output = tmp_path / "tasks.json"
    args = ["predict", small_model_dir, inputs, output, "--format", "label-studio", "--label-config", config]
    result = runner.invoke(app, [*map(str, args), "--model-version", "m-2"])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())
    assert 'model entity labels not in the labeling config\'s <Labels name="ner">, left out of predictions:' in printed
    assert "labeling config entity labels the model never predicts: Misc" in printed
    assert "\x1b[" not in result.stdout
    (task,) = json.loads(output.read_text("utf8"))
    assert task["data"] == {"sentence": TEXTS[0]}
    parsed = read_label_config(config)
    check_prediction(task["predictions"][0], TEXTS[0], parsed)
    assert task["predictions"][0]["model_version"] == "m-2"
    assert all(item["from_name"] == "ner" for item in task["predictions"][0]["result"] if item["type"] == "labels")

    # the config is an input: never overwritten; options only for this format
    result = runner.invoke(
        app, [*map(str, args[:3]), str(config), "--format", "label-studio", "--label-config", str(config)]
    )
    assert result.exit_code == 1 and "config.xml" in result.stderr
    result = runner.invoke(app, [*map(str, args[:4]), "--label-config", str(config)])
    assert result.exit_code == 1 and "for the label-studio output format" in result.stderr
    bad = tmp_path / "bad.xml"
    bad.write_text("<View>", "utf8")
    result = runner.invoke(app, [*map(str, args[:6]), "--label-config", str(bad)])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {bad}: the labeling config is not XML")
