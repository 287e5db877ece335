"""`predict` (spacy_spert/apps/predict.py, the record of spacy_spert/io/records.py, the CLI command): the JSONL record
schema against doc.spans / doc._.relations, every input and output format,
input order and carried fields, the length-sorted buffer against plain
nlp.pipe, n_process 2, invalid lines, and that an error or interruption
leaves no output file."""

import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin, SpanGroup
from typer.testing import CliRunner

import spacy_spert.io.records as records_module
from spacy_spert import make_relation
from spacy_spert.apps.predict import pipe_by_length, predict
from spacy_spert.cli import app
from spacy_spert.io.jsonl import InvalidInput
from spacy_spert.io.records import doc_to_record

TEXTS = [
    "Mary Smith works for Acme Corp in Paris .",
    "",
    "John Doe lives in London .",
    "   ",
    "Globex , a firm in Berlin , hired Anna Lee .",
    "The weather was nice .",
    "Anna Lee works for Globex in Berlin and John Doe lives in Paris .",
    "Mary Smith lives in London .",
]


@pytest.fixture(scope="module")
def nlp(model_dir):
    return spacy.load(model_dir)


@pytest.fixture(scope="module")
def expected(nlp):
    """The records of plain nlp.pipe, one doc at a time (no padding)."""
    return [doc_to_record(doc) for doc in nlp.pipe(TEXTS, batch_size=1)]


def write_jsonl(path: Path, objs) -> Path:
    path.write_text("".join(json.dumps(obj) + "\n" for obj in objs), encoding="utf8")
    return path


def read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]


def assert_same_records(got, want):
    """Same texts, entities and relations; scores equal to float tolerance."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["text"] == w["text"]
        for key in ("entities", "relations"):
            assert [{**x, "score": None} for x in g[key]] == [{**x, "score": None} for x in w[key]], g["text"]
            assert [x["score"] for x in g[key]] == pytest.approx([x["score"] for x in w[key]], abs=1e-5)


def entities_and_relations(records):
    return sum(len(r["entities"]) for r in records), sum(len(r["relations"]) for r in records)


def no_leftovers(folder: Path, *allowed: str) -> bool:
    """Nothing in the folder but the allowed names (no output, no temp file)."""
    return sorted(p.name for p in folder.iterdir()) == sorted(allowed)


runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


# The record ---------------------------------------------------------------------


def test_record_matches_spans_and_relations(nlp):
    """Entities are doc.spans["sc"] in order with char and token offsets and
    scores; relations point at them by index."""
    docs = list(nlp.pipe(TEXTS))
    n_entities, n_relations = 0, 0
    for doc in docs:
        record = doc_to_record(doc, "sc")
        group = doc.spans["sc"]
        assert record["text"] == doc.text
        assert record["entities"] == [
            {
                "start": span.start_char,
                "end": span.end_char,
                "token_start": span.start,
                "token_end": span.end,
                "label": span.label_,
                "score": float(score),
                "text": span.text,
            }
            for span, score in zip(group, group.attrs["scores"])
        ]
        spans = list(group)
        assert [
            {
                "head_start": spans[r["head"]].start,
                "head_end": spans[r["head"]].end,
                "tail_start": spans[r["tail"]].start,
                "tail_end": spans[r["tail"]].end,
                "label": r["label"],
                "score": r["score"],
                "head_label": spans[r["head"]].label_,
                "tail_label": spans[r["tail"]].label_,
            }
            for r in record["relations"]
        ] == list(doc._.relations)
        json.dumps(record)  # JSON-safe
        n_entities += len(group)
        n_relations += len(doc._.relations)
    assert n_entities > 0 and n_relations > 0, "the overfitted model should find something"


def test_record_of_relation_endpoint_that_is_no_entity():
    """A relation argument missing from the span group (gold or edited docs)
    is appended to the entities once, with score null."""
    nlp = spacy.blank("en")
    doc = nlp("Anna Lee works for Acme in Oslo")
    anna, acme, oslo = doc[0:2], doc[4:5], doc[6:7]
    anna.label_, acme.label_, oslo.label_ = "Peop", "Org", "Loc"
    doc.spans["sc"] = SpanGroup(doc, name="sc", spans=[anna])  # no scores: gold
    acme_as_loc = doc[4:5]
    acme_as_loc.label_ = "Loc"
    doc._.relations = [
        make_relation(anna, acme, "Work_For", 0.9),
        make_relation(acme, oslo, "OrgBased_In"),
        make_relation(anna, acme_as_loc, "Live_In"),
    ]
    record = doc_to_record(doc)
    assert record["entities"] == [
        {"start": 0, "end": 8, "token_start": 0, "token_end": 2, "label": "Peop", "score": None, "text": "Anna Lee"},
        {"start": 19, "end": 23, "token_start": 4, "token_end": 5, "label": "Org", "score": None, "text": "Acme"},
        {"start": 27, "end": 31, "token_start": 6, "token_end": 7, "label": "Loc", "score": None, "text": "Oslo"},
        {"start": 19, "end": 23, "token_start": 4, "token_end": 5, "label": "Loc", "score": None, "text": "Acme"},
    ]
    assert record["relations"] == [
        {"head": 0, "tail": 1, "label": "Work_For", "score": 0.9},
        {"head": 1, "tail": 2, "label": "OrgBased_In", "score": 1.0},
        {"head": 0, "tail": 3, "label": "Live_In", "score": 1.0},
    ]
    assert doc_to_record(doc, "missing")["entities"][0]["text"] == "Anna Lee"


def test_record_schema_is_one(nlp):
    """The records doc_to_record and output_record write (predicted, and gold
    with null scores and an appended relation argument) pass check_record
    (what render reads) and validate against serve's pydantic Record (its
    OpenAPI description), whose fields are the record's: the three cannot
    drift apart."""
    from spacy_spert.apps.serve.schema import Entity, Record, Relation
    from spacy_spert.io.records import ENTITY_FIELDS, RECORD_FIELDS, RELATION_FIELDS, check_record, output_record

    assert tuple(Entity.model_fields) == ENTITY_FIELDS and tuple(Relation.model_fields) == RELATION_FIELDS
    assert tuple(Record.model_fields) == RECORD_FIELDS
    gold = spacy.blank("en")("Anna Lee works for Acme")
    anna, acme = gold[0:2], gold[4:5]
    anna.label_, acme.label_ = "Peop", "Org"
    gold.spans["sc"] = SpanGroup(gold, name="sc", spans=[anna])
    gold._.relations = [make_relation(anna, acme, "Work_For")]
    docs = [*nlp.pipe(TEXTS), gold]
    records = [doc_to_record(doc) for doc in docs] + [output_record(doc, {"id": 7, "text": "x"}) for doc in docs]
    assert any(r["relations"] for r in records) and any(e["score"] is None for r in records for e in r["entities"])
    for record in records:
        record = json.loads(json.dumps(record))  # as read back
        check_record(record)
        assert Record.model_validate(record).model_dump() == record
        assert list(record)[-3:] == list(RECORD_FIELDS)
        assert all(tuple(e) == ENTITY_FIELDS for e in record["entities"])
        assert all(tuple(r) == RELATION_FIELDS for r in record["relations"])


# Length-sorted buffer ------------------------------------------------------------


@pytest.mark.parametrize("buffer_size,batch_size", [(1, 1), (3, 2), (100, 4)])
def test_pipe_by_length_keeps_order_and_output(nlp, expected, buffer_size, batch_size):
    """Within each buffer the pipeline sees the texts shortest first; the
    results come back in input order, as plain nlp.pipe gives them."""
    seen = []

    def convert(doc, context):
        seen.append(doc.text)
        return context, doc_to_record(doc)

    items = [(text, i) for i, text in enumerate(TEXTS)]
    out = list(pipe_by_length(nlp, items, batch_size=batch_size, buffer_size=buffer_size, convert=convert))
    assert [i for i, _ in out] == list(range(len(TEXTS)))
    assert_same_records([record for _, record in out], expected)
    for start in range(0, len(TEXTS), buffer_size):
        chunk = TEXTS[start : start + buffer_size]
        assert seen[start : start + buffer_size] == sorted(chunk, key=len)


def test_pipe_by_length_default_yields_docs_and_contexts(nlp):
    out = list(pipe_by_length(nlp, [("Anna Lee .", "a"), ("", "b")], buffer_size=2))
    assert [(doc.text, context) for doc, context in out] == [("Anna Lee .", "a"), ("", "b")]


@pytest.mark.parametrize("bad", ["boom in the middle", "boom at the end"])
def test_pipe_by_length_never_drops_a_doc(bad):
    """A pipeline whose error handler skips failing docs is an error, never a
    shorter or shifted output."""
    from spacy.language import Language

    @Language.component("fails_on_boom")
    def fails_on_boom(doc):
        if "boom" in doc.text:
            raise RuntimeError("boom")
        return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("fails_on_boom")
    nlp.set_error_handler(lambda name, proc, docs, e: None)
    texts = ["a", "b c", bad, "d e f", "g"] if "middle" in bad else ["a", "b c", "d e f", "g", bad]
    out = []
    with pytest.raises(ValueError, match=f"no doc for input doc {texts.index(bad) + 1} "):
        for _doc, i in pipe_by_length(nlp, [(t, i) for i, t in enumerate(texts)], batch_size=1, buffer_size=2):
            out.append(i)
    assert out == list(range(texts.index(bad)))


# Input and output formats --------------------------------------------------------


def test_jsonl_in_jsonl_out(nlp, expected, tmp_path):
    """One line per input line in input order: the input's fields in their
    order, the text, entities and relations; blank lines are not docs."""
    objs = [{"id": i, "text": text, "meta": {"k": [i]}} for i, text in enumerate(TEXTS)]
    objs[0]["entities"] = "replaced"
    path = write_jsonl(tmp_path / "in.jsonl", objs)
    path.write_text(path.read_text() + "\n  \n", encoding="utf8")
    report = predict(nlp, path, tmp_path / "out.jsonl", batch_size=2, buffer_size=3)
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [list(line) for line in lines] == [["id", "text", "meta", "entities", "relations"]] + [
        ["id", "text", "meta", "entities", "relations"]
    ] * (len(TEXTS) - 1)
    assert [(line["id"], line["meta"]) for line in lines] == [(i, {"k": [i]}) for i in range(len(TEXTS))]
    assert_same_records(lines, expected)
    assert lines[1]["entities"] == [] and lines[3]["entities"] == [] and lines[3]["text"] == "   "
    assert (report.n_docs, report.skipped) == (len(TEXTS), [])
    assert (report.n_entities, report.n_relations) == entities_and_relations(expected)
    assert no_leftovers(tmp_path, "in.jsonl", "out.jsonl")


def test_text_key(nlp, expected, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"body": text} for text in TEXTS])
    predict(nlp, path, tmp_path / "out.jsonl", text_key="body")
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert_same_records([{**line, "text": line.pop("body")} for line in lines], expected)


def test_text_files(nlp, expected, tmp_path):
    """A folder: each .txt file below it one doc, sorted by path; a file: one
    doc; --lines: one doc per line, empty lines included."""
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text(TEXTS[0], encoding="utf8")
    (folder / "a.txt").write_text(TEXTS[2], encoding="utf8")
    (folder / "sub" / "c.txt").write_text(TEXTS[4], encoding="utf8")
    (folder / "notes.md").write_text("not a doc", encoding="utf8")
    predict(nlp, folder, tmp_path / "out.jsonl")
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [(line["file"], line["text"]) for line in lines] == [
        ("a.txt", TEXTS[2]),
        ("b.txt", TEXTS[0]),
        ("sub/c.txt", TEXTS[4]),
    ]
    assert_same_records(lines, [expected[2], expected[0], expected[4]])

    predict(nlp, folder / "b.txt", tmp_path / "one.jsonl")
    assert [(line["file"], line["text"]) for line in read_jsonl(tmp_path / "one.jsonl")] == [("b.txt", TEXTS[0])]

    (tmp_path / "lines.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf8")
    predict(nlp, tmp_path / "lines.txt", tmp_path / "lines.jsonl", lines=True)
    lines = read_jsonl(tmp_path / "lines.jsonl")
    assert [(line["file"], line["line"]) for line in lines] == [("lines.txt", n) for n in range(1, len(TEXTS) + 1)]
    assert_same_records(lines, expected)


def test_spacy_in_and_out(nlp, expected, tmp_path):
    """JSONL -> .spacy keeps the fields in user data and the relations, not
    the transformer output; .spacy -> JSONL carries them on; .spacy input
    keeps its tokenization."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": text} for i, text in enumerate(TEXTS)])
    predict(nlp, path, tmp_path / "out.spacy")
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert [doc.user_data["input_fields"] for doc in docs] == [{"id": i} for i in range(len(TEXTS))]
    assert all(doc._.trf_data is None for doc in docs)
    assert_same_records([doc_to_record(doc) for doc in docs], expected)

    report = predict(nlp, tmp_path / "out.spacy", tmp_path / "again.jsonl")
    lines = read_jsonl(tmp_path / "again.jsonl")
    assert [line["id"] for line in lines] == list(range(len(TEXTS))) and report.n_docs == len(TEXTS)
    assert_same_records(lines, expected)

    words = ["Mary", "Smith", "works", "for", "Acme", "Corp"]
    DocBin(docs=[Doc(nlp.vocab, words=words)]).to_disk(tmp_path / "gold.spacy")
    predict(nlp, tmp_path / "gold.spacy", tmp_path / "gold.jsonl", output_format="jsonl")
    (line,) = read_jsonl(tmp_path / "gold.jsonl")
    assert line["text"] == "Mary Smith works for Acme Corp " and set(line) == {"text", "entities", "relations"}


@pytest.mark.slow
def test_n_process_2_same_output(model_dir, expected, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": text} for i, text in enumerate(TEXTS * 3)])
    predict(model_dir, path, tmp_path / "out.jsonl", n_process=2, batch_size=2, buffer_size=5)
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [line["id"] for line in lines] == list(range(3 * len(TEXTS)))
    assert_same_records(lines, expected * 3)


# Invalid input, errors, interruptions -------------------------------------------

BAD_LINES = [
    (b"{not json}\n", "line 2: not valid JSON"),
    (b'["a list"]\n', "line 2: expected a JSON object, got a list"),
    (b'{"txt": "typo"}\n', "line 2: no field 'text' (the text key; fields: txt)"),
    (b'{"text": 3}\n', "line 2: field 'text' must be a string, got a number"),
    (b'{"text": "caf\xe9"}\n', "line 2: not UTF-8 text"),
]


@pytest.mark.parametrize("bad,message", BAD_LINES)
def test_bad_line_is_an_error_naming_the_line(model_dir, tmp_path, bad, message):
    """One error line naming file and line, exit 1, no output (nor temp) file."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "Anna Lee ."}\n' + bad + b'{"text": "John Doe ."}\n')
    result = invoke("predict", model_dir, path, tmp_path / "out.jsonl")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {path}: {message}") and len(result.stderr.splitlines()) == 1
    assert no_leftovers(tmp_path, "in.jsonl")


def test_skip_invalid_counts_and_lists_lines(model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"text": "Anna Lee ."}\n'
        + b"".join(bad.replace(b"\n", b"\n\n") for bad, _ in BAD_LINES)
        + b'{"text": "John Doe ."}\n'
    )
    result = invoke("predict", model_dir, path, tmp_path / "out.jsonl", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert [line["text"] for line in read_jsonl(tmp_path / "out.jsonl")] == ["Anna Lee .", "John Doe ."]
    assert "Wrote 2 docs" in result.stdout and "Skipped 5 invalid lines or files:" in result.stdout
    for n, (_, message) in zip((2, 4, 6, 8, 10), BAD_LINES):
        assert f"  {path}: line {n}: {message.split(': ', 1)[1]}" in result.stdout


def test_skip_invalid_text_file(nlp, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("Anna Lee .", encoding="utf8")
    (folder / "b.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InvalidInput, match=r"b\.txt: not UTF-8 text"):
        predict(nlp, folder, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    report = predict(nlp, folder, tmp_path / "out.jsonl", skip_invalid=True)
    assert report.n_docs == 1 and [(e.source, e.line) for e in report.skipped] == [(str(folder / "b.txt"), None)]
    (tmp_path / "lines.txt").write_bytes(b"Anna Lee .\ncaf\xe9\n")
    report = predict(nlp, tmp_path / "lines.txt", tmp_path / "lines.jsonl", lines=True, skip_invalid=True)
    assert report.n_docs == 1 and [e.line for e in report.skipped] == [2]


@pytest.mark.parametrize("exception", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_run_leaves_no_output(nlp, tmp_path, monkeypatch, exception):
    """An exception or Ctrl-C in mid-stream removes the temporary file and
    leaves an existing output file as it was."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": text} for text in TEXTS])
    calls = []

    def failing(doc, spans_key="sc"):
        calls.append(doc)
        if len(calls) == 5:
            raise exception
        return doc_to_record(doc, spans_key)

    monkeypatch.setattr(records_module, "doc_to_record", failing)
    with pytest.raises(type(exception)):
        predict(nlp, path, tmp_path / "out.jsonl", batch_size=1, buffer_size=2)
    assert no_leftovers(tmp_path, "in.jsonl")
    (tmp_path / "out.jsonl").write_text("old\n")
    calls.clear()
    with pytest.raises(type(exception)):
        predict(nlp, path, tmp_path / "out.jsonl", batch_size=1, buffer_size=2)
    assert (tmp_path / "out.jsonl").read_text() == "old\n" and no_leftovers(tmp_path, "in.jsonl", "out.jsonl")


def test_argument_errors(model_dir, nlp, tmp_path):
    assert (
        invoke("predict", model_dir, tmp_path / "missing.jsonl", tmp_path / "o.jsonl").stderr
        == f"error: {tmp_path / 'missing.jsonl'}: No such file or directory\n"
    )
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    result = invoke("predict", model_dir, path, tmp_path / "o.x", "--format", "csv")
    assert result.exit_code == 1 and "unknown output format 'csv'" in result.stderr
    with pytest.raises(ValueError, match="one doc per line"):
        predict(nlp, path, tmp_path / "o.jsonl", lines=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match=r"no \.txt files"):
        predict(nlp, tmp_path / "empty", tmp_path / "o.jsonl")
    assert no_leftovers(tmp_path, "in.jsonl", "empty")


# The command ---------------------------------------------------------------------


def test_cli_predict(model_dir, expected, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": text} for text in TEXTS])
    result = invoke(
        "predict", model_dir, path, tmp_path / "out" / "tagged.jsonl", "--batch-size", "3", "--buffer-size", "4"
    )
    assert result.exit_code == 0, result.output
    n_entities, n_relations = entities_and_relations(expected)
    assert f"Wrote {len(TEXTS)} docs ({n_entities} entities, {n_relations} relations)" in result.stdout
    assert_same_records(read_jsonl(tmp_path / "out" / "tagged.jsonl"), expected)
    result = invoke("predict", model_dir, path, tmp_path / "tagged.spacy")
    assert result.exit_code == 0 and len(DocBin().from_disk(tmp_path / "tagged.spacy")) == len(TEXTS)


def test_cli_defaults_are_the_library_defaults():
    import inspect

    import typer

    params = {p.name: p.default for p in typer.main.get_command(app).commands["predict"].params}
    signature = inspect.signature(predict).parameters
    for name in ("batch_size", "buffer_size", "n_process", "gpu_id", "text_key"):
        assert params[name] == signature[name].default, name


# The throughput benchmark (spacy_spert/experiments/throughput.py) ----------------


def test_padding_counts_what_batches_pad():
    from research.throughput import padding

    lengths = [1, 4, 2, 3]
    assert padding(lengths, 2) == pytest.approx((4 * 2 + 3 * 2) / 10 - 1)  # [1, 4], [2, 3]
    assert padding(lengths, 2, buffer_size=4) == pytest.approx((2 * 2 + 4 * 2) / 10 - 1)  # [1, 2], [3, 4]
    assert padding(lengths, 1) == 0


def test_throughput_command_writes_results(model_dir, nlp, tiny_bert, tmp_path):
    corpus = tmp_path / "corpus.spacy"
    DocBin(docs=list(nlp.pipe(TEXTS))).to_disk(corpus)
    results = tmp_path / "results" / "tp.json"
    from research.cli import app as research_app

    result = runner.invoke(
        research_app,
        [
            str(a)
            for a in (
                "throughput",
                model_dir,
                corpus,
                "--results",
                results,
                "--n-docs",
                "20",
                "--batch-sizes",
                "1,4",
                "--batch-size",
                "4",
                "--buffer-size",
                "8",
                "--repeats",
                "1",
                "--seed",
                "3",
            )
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(results.read_text())
    assert data["n_docs"] == 20 and data["seed"] == 3 and list(data["nlp_pipe_docs_per_s"]) == ["1", "4"]
    assert data["output"]["same_output"] and data["output"]["n_entities"] > 0
    assert data["ratio"] == pytest.approx(
        data["predict"]["docs_per_s"] / max(data["nlp_pipe_docs_per_s"].values()), abs=1e-3
    )
    assert len(data["ratio_by_round"]) == 1 and data["transformer"] == str(tiny_bert)
    assert "cpus" in data["machine"] and "spacy" in data["versions"]
    assert results.with_suffix(".md").read_text() in result.stdout


HOSTILE_LINES = [
    (b'{"text": "a", "id": "\\ud800"}\n', "an unpaired surrogate U+D800"),
    (b'{"text": "a", "n": ' + b"9" * 5000 + b"}\n", "an integer of 5000 digits, more than the limit of 4300"),
    (b'{"text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested too deeply"),
    (b'{"text": "a", "x": NaN}\n', "NaN is not a JSON value"),
    (b'{"text": "a", "x": -Infinity}\n', "-Infinity is not a JSON value"),
    (b'{"text": "a", "x": 1e999}\n', 'the number "1e999" is out of range'),
]


@pytest.mark.parametrize("line,message", HOSTILE_LINES, ids=["surrogate", "huge-int", "deep", "nan", "inf", "1e999"])
def test_hostile_line_is_named_and_skipped(model_dir, tmp_path, line, message):
    """A line whose values could not be written back as JSON (or read at all)
    is an error naming the file and line, never a traceback; --skip-invalid
    skips and lists it, and the output stays valid JSON."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "Anna Lee ."}\n' + line + b'{"text": "John Doe ."}\n')
    out = tmp_path / "out.jsonl"
    result = invoke("predict", model_dir, path, out)
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr.startswith(f"error: {path}: line 2: ") and message in result.stderr, result.stderr
    result = invoke("predict", model_dir, path, out, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["text"] for x in out.read_text(encoding="utf8").splitlines()] == ["Anna Lee .", "John Doe ."]
    assert f"  {path}: line 2: " in result.stdout


def test_bad_utf8_names_the_byte(model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "Anna Lee ."}\n{"text": "caf\xe9"}\n')
    result = invoke("predict", model_dir, path, tmp_path / "out.jsonl")
    assert result.stderr == (
        f"error: {path}: line 2: not UTF-8 text (byte 14 of the line, 0xe9: invalid continuation byte)\n"
    )


def test_long_text_is_named_and_skipped(model_dir, tmp_path):
    """A text over --max-length is an invalid line in our words (not spaCy's
    E088 about the parser), skipped and listed under --skip-invalid; the
    others are written."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "Anna Lee ."}, {"text": "John Doe lives in London ."}])
    out = tmp_path / "out.jsonl"
    result = invoke("predict", model_dir, path, out, "--max-length", "20")
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr == (
        f"error: {path}: line 2: a text of 26 characters, over the limit of 20 (the pipeline's max_length: memory "
        "grows with the length of a doc): split the text, or raise the limit (predict --max-length)\n"
    )
    result = invoke("predict", model_dir, path, out, "--max-length", "20", "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert [line["text"] for line in read_jsonl(out)] == ["Anna Lee ."]
    assert f"  {path}: line 2: a text of 26 characters, over the limit of 20" in result.stdout
    assert invoke("predict", model_dir, path, out, "--max-length", "0").exit_code == 1


def test_long_text_follows_the_pipeline_max_length(nlp, tmp_path):
    """Without max_length the pipeline's nlp.max_length is the limit, in our
    words; with it the text is processed (spaCy's own check does not fire),
    and a pipeline passed in keeps its max_length. Text files and --lines
    too."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "John Doe lives in London ."}])
    saved = nlp.max_length
    nlp.max_length = 20
    try:
        with pytest.raises(InvalidInput, match=r"line 1: a text of 26 characters, over the limit of 20") as info:
            predict(nlp, path, tmp_path / "out.jsonl")
        assert "E088" not in str(info.value) and "parser" not in str(info.value)
        report = predict(nlp, path, tmp_path / "out.jsonl", max_length=100)
        assert report.n_docs == 1 and nlp.max_length == 20
        (tmp_path / "texts").mkdir()
        (tmp_path / "texts" / "a.txt").write_text("John Doe lives in London .\nAnna Lee .\n", encoding="utf8")
        report = predict(nlp, tmp_path / "texts", tmp_path / "files.jsonl", skip_invalid=True)
        assert report.n_docs == 0 and [(e.source, e.line) for e in report.skipped] == [
            (str(tmp_path / "texts" / "a.txt"), None)
        ]
        report = predict(nlp, tmp_path / "texts" / "a.txt", tmp_path / "lines.jsonl", lines=True, skip_invalid=True)
        assert report.n_docs == 1 and [e.line for e in report.skipped] == [1]
    finally:
        nlp.max_length = saved
