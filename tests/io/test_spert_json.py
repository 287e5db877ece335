"""Tests for spacy_spert.io.spert_json and the ``python -m spacy_spert convert`` CLI.

The fixtures in tests/data are hand-written sentences (not benchmark data):
spert_small.json has an overlapping/nested entity pair (record 1), a span with
two entity types and an entity pair with two relation types (record 2), an
integer and a string orig_id, a record without orig_id and one without
entities.
"""

import copy
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import spacy
from conftest import benchmark_file
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Corpus

from spacy_spert.io.spert_json import (
    ConversionError,
    SpertTypes,
    convert_file,
    docs_to_records,
    read_docbin,
    read_types,
    records_to_docs,
)
from spacy_spert.relations import make_relation

DATA = Path(__file__).parents[1] / "data"
SMALL = DATA / "spert_small.json"
SMALL_TYPES = DATA / "spert_small_types.json"


def small_records():
    return json.loads(SMALL.read_text(encoding="utf8"))


def expected_relations(record):
    """The relation dicts a record should give, written out by hand from the JSON."""
    ents = record["entities"]
    return [
        {
            "head_start": ents[r["head"]]["start"],
            "head_end": ents[r["head"]]["end"],
            "tail_start": ents[r["tail"]]["start"],
            "tail_end": ents[r["tail"]]["end"],
            "label": r["type"],
            "score": 1.0,
            "head_label": ents[r["head"]]["type"],
            "tail_label": ents[r["tail"]]["type"],
        }
        for r in record["relations"]
    ]


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


# ---------------------------------------------------------------------------
# Valid data


def test_read_types():
    types = read_types(SMALL_TYPES)
    assert isinstance(types, SpertTypes)
    assert types.entities == ["Loc", "Org", "Peop", "Other"]
    assert types.relations == ["Work_For", "OrgBased_In", "Live_In", "Located_In", "Sibling_Of"]
    assert types.symmetric == ["Sibling_Of"]


def test_records_to_docs_in_memory(nlp):
    records = small_records()
    docs = records_to_docs(records, nlp.vocab, types=read_types(SMALL_TYPES))
    assert len(docs) == 4
    ford = docs[2]
    assert ford.has_unknown_spaces
    assert [t.text for t in ford] == records[2]["tokens"]
    assert [(s.start, s.end, s.label_) for s in ford.spans["sc"]] == [
        (0, 1, "Peop"),
        (0, 1, "Org"),
        (2, 3, "Org"),
        (5, 6, "Loc"),
    ]
    assert ford._.relations[1] == {
        "head_start": 0,
        "head_end": 1,
        "tail_start": 5,
        "tail_end": 6,
        "label": "OrgBased_In",
        "score": 1.0,
        "head_label": "Org",
        "tail_label": "Loc",
    }
    assert "orig_id" not in ford.user_data
    assert docs[0].user_data["orig_id"] == "101"
    # Each doc gets its own new list (not the extension's shared default).
    assert docs[3]._.relations == []
    assert docs[3]._.relations is not docs[0]._.relations
    assert len(docs[3].spans["sc"]) == 0


def test_convert_file_and_read_back(tmp_path, nlp):
    records = small_records()
    out = tmp_path / "small.spacy"
    n = convert_file(SMALL, out, types_path=SMALL_TYPES)
    assert n == 4
    assert sorted(os.listdir(tmp_path)) == ["small.spacy"]  # no temp file left
    docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
    assert len(docs) == len(records)
    for doc, record in zip(docs, records):
        assert [t.text for t in doc] == record["tokens"]
        assert doc.has_unknown_spaces
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == [
            (e["start"], e["end"], e["type"]) for e in record["entities"]
        ]
        assert [dict(r) for r in doc._.relations] == expected_relations(record)
        if "orig_id" in record:
            assert doc.user_data["orig_id"] == str(record["orig_id"])
        else:
            assert "orig_id" not in doc.user_data
    # Overlapping (nested) entities and a span with two labels survive.
    assert [(s.start, s.end) for s in docs[1].spans["sc"]] == [(1, 4), (3, 4), (1, 5)]
    assert [s.label_ for s in docs[2].spans["sc"]][:2] == ["Peop", "Org"]
    # The pair (Ford/Org, Detroit) has two relation labels.
    pair = [r["label"] for r in docs[2]._.relations if (r["head_start"], r["tail_start"]) == (0, 5)]
    assert pair == ["OrgBased_In", "Located_In", "Live_In"]


def test_convert_file_other_spans_key(tmp_path, nlp):
    out = tmp_path / "small.spacy"
    convert_file(SMALL, out, spans_key="ents_gold")
    docs = read_docbin(out, nlp.vocab)
    assert "sc" not in docs[0].spans
    assert len(docs[0].spans["ents_gold"]) == 3
    assert docs_to_records(docs, "ents_gold")[0]["entities"] == small_records()[0]["entities"]


def test_corpus_keeps_gold_tokenization(tmp_path, nlp):
    records = small_records()
    # Tokens that spaCy's tokenizer would split or merge differently.
    records[0]["tokens"] = [
        "Maria",
        "Lopez's",
        "co-founder",
        "joined",
        "Acme",
        "Robotics",
        "in",
        "Lyon",
        "(",
        "France",
        ").",
    ]
    records[0]["entities"] = [
        {"type": "Peop", "start": 0, "end": 2},
        {"type": "Org", "start": 4, "end": 6},
        {"type": "Loc", "start": 7, "end": 8},
    ]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(records), encoding="utf8")
    out = tmp_path / "train.spacy"
    convert_file(path, out)
    examples = list(Corpus(str(out))(nlp))
    assert len(examples) == len(records)
    for eg, record in zip(examples, records):
        assert [t.text for t in eg.predicted] == record["tokens"]
        assert [t.text for t in eg.reference] == record["tokens"]
    assert [(s.start, s.end, s.label_) for s in examples[0].reference.spans["sc"]] == [
        (0, 2, "Peop"),
        (4, 6, "Org"),
        (7, 8, "Loc"),
    ]
    # Without the gold tokens spaCy would tokenize differently, so this test can fail.
    assert [t.text for t in nlp.make_doc(examples[0].reference.text)] != records[0]["tokens"]


def test_round_trip_json_docs_json(tmp_path, nlp):
    records = small_records()
    out = tmp_path / "small.spacy"
    convert_file(SMALL, out)
    back = docs_to_records(read_docbin(out, nlp.vocab))
    for record in records:
        if "orig_id" in record:
            record["orig_id"] = str(record["orig_id"])
    assert back == records
    # and in memory, without the DocBin
    assert docs_to_records(records_to_docs(small_records(), nlp.vocab)) == records
    json.dumps(back)  # JSON-serializable


def test_docs_to_records_adds_missing_entities(nlp):
    doc = Doc(nlp.vocab, words=["Ann", "works", "at", "Initech", "in", "Austin"])
    doc.spans["sc"] = [Span(doc, 0, 1, "Peop")]
    doc._.relations = [
        make_relation(Span(doc, 0, 1, "Peop"), Span(doc, 3, 4, "Org"), "Work_For", 0.75),
        {
            "head_start": 3,
            "head_end": 4,
            "tail_start": 5,
            "tail_end": 6,
            "label": "OrgBased_In",
            "score": 0.5,
            "head_label": "Org",
            "tail_label": "Loc",
        },
        # No labels: resolved by boundaries to the existing entity 0 and 1.
        {"head_start": 0, "head_end": 1, "tail_start": 3, "tail_end": 4, "label": "Kill"},
    ]
    [record] = docs_to_records([doc], include_scores=True)
    assert record["entities"] == [
        {"type": "Peop", "start": 0, "end": 1},
        {"type": "Org", "start": 3, "end": 4},
        {"type": "Loc", "start": 5, "end": 6},
    ]
    assert record["relations"] == [
        {"type": "Work_For", "head": 0, "tail": 1, "score": 0.75},
        {"type": "OrgBased_In", "head": 1, "tail": 2, "score": 0.5},
        {"type": "Kill", "head": 0, "tail": 1, "score": 1.0},
    ]
    assert "orig_id" not in record
    # A relation to an unknown span without a label cannot be exported.
    doc._.relations = [{"head_start": 0, "head_end": 1, "tail_start": 5, "tail_end": 6, "label": "X"}]
    with pytest.raises(ValueError, match="tail"):
        docs_to_records([doc])


def test_identical_entities_resolve_to_the_first(nlp):
    """Two entities with the same boundaries and type are both kept, but a
    relation only records spans, so on export it points at the first of them."""
    record = {
        "tokens": ["Ann", "met", "Bo"],
        "entities": [
            {"type": "Peop", "start": 0, "end": 1},
            {"type": "Peop", "start": 0, "end": 1},
            {"type": "Peop", "start": 2, "end": 3},
        ],
        "relations": [{"type": "Kill", "head": 1, "tail": 2}],
    }
    [doc] = records_to_docs([record], nlp.vocab)
    assert len(doc.spans["sc"]) == 3
    [back] = docs_to_records([doc])
    assert back["entities"] == record["entities"]
    assert back["relations"] == [{"type": "Kill", "head": 0, "tail": 2}]


def test_empty_tokens_give_an_empty_doc(tmp_path, nlp):
    records = [{"tokens": [], "entities": [], "relations": [], "orig_id": 9}] + small_records()[:1]
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(records), encoding="utf8")
    out = tmp_path / "empty.spacy"
    assert convert_file(path, out) == 2
    docs = read_docbin(out, nlp.vocab)
    assert len(docs[0]) == 0 and docs[0].user_data["orig_id"] == "9"
    assert len(docs[1]) == 10
    # spaCy's Corpus skips empty docs.
    assert len(list(Corpus(str(out))(nlp))) == 1


def test_labels_free_without_types(nlp):
    records = [
        {
            "tokens": ["a", "b", "c"],
            "entities": [{"type": "Anything", "start": 0, "end": 1}, {"type": "Else", "start": 1, "end": 3}],
            "relations": [{"type": "R-1", "head": 1, "tail": 0}],
        }
    ]
    docs = records_to_docs(records, nlp.vocab)
    assert [s.label_ for s in docs[0].spans["sc"]] == ["Anything", "Else"]
    assert docs[0]._.relations[0]["label"] == "R-1"
    with pytest.raises(ConversionError):
        records_to_docs(records, nlp.vocab, types=SpertTypes(["Anything", "Else"], ["R-2"], []))


def test_error_messages_exact(nlp):
    records = small_records()
    records[1]["entities"][2]["end"] = 1  # start is 1
    with pytest.raises(ConversionError) as info:
        records_to_docs(records, nlp.vocab, source="conll04_train.json")
    assert str(info.value) == (
        "conll04_train.json: record 1: field 'entities[2].end': end (1) must be greater than start (1)"
    )
    assert (info.value.record, info.value.field) == (1, "entities[2].end")
    records = small_records()
    records[0]["relations"][0]["head"] = 7
    with pytest.raises(ConversionError) as info:
        records_to_docs(records, nlp.vocab, source="x.json")
    assert str(info.value) == (
        "x.json: record 0: field 'relations[0].head': entity index 7 does not exist (record has 3 entities)"
    )


def test_error_leaves_existing_output_unchanged(tmp_path):
    out = tmp_path / "out.spacy"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.json"
    records = small_records()
    records[3]["tokens"][1] = ""
    bad.write_text(json.dumps(records), encoding="utf8")
    with pytest.raises(ConversionError, match=r"record 3: field 'tokens\[1\]'"):
        convert_file(bad, out)
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["bad.json", "out.spacy"]


def test_output_is_a_directory(tmp_path):
    (tmp_path / "out.spacy").mkdir()
    with pytest.raises(IsADirectoryError):
        convert_file(SMALL, tmp_path / "out.spacy")
    assert sorted(os.listdir(tmp_path)) == ["out.spacy"]
    assert os.listdir(tmp_path / "out.spacy") == []


@pytest.mark.parametrize(
    "types_json,field",
    [
        ('["Loc"]', None),
        ('{"entities": {"Loc": {}}}', "relations"),
        ('{"entities": ["Loc"], "relations": {}}', "entities"),
        ('{"entities": {"Loc": 1}, "relations": {}}', "entities.Loc"),
        ('{"entities": {}, "relations": {"R": {"symmetric": "yes"}}}', "relations.R.symmetric"),
        ('{"entities": {', None),
    ],
)
def test_read_types_errors(tmp_path, types_json, field):
    path = tmp_path / "bad_types.json"
    path.write_text(types_json, encoding="utf8")
    with pytest.raises(ConversionError) as info:
        read_types(path)
    message = str(info.value)
    assert message.startswith(str(path) + ": ")
    assert "\n" not in message
    if field is not None:
        assert f"field '{field}'" in message


# ---------------------------------------------------------------------------
# Malformed input through the CLI
#
# Every error case runs ``python -m spacy_spert convert ...`` in a process of
# its own, with its own exit status and stderr. Starting the interpreter and
# importing the package takes seconds (spaCy, torch), so the cases are run as
# one batch: one ``sys.executable`` subprocess imports the package once and
# forks a child per case that runs the ``spacy_spert`` module as ``__main__``
# (what ``-m`` does) with the case's argv, cwd and stdout/stderr files. A few
# tests below also spawn ``python -m spacy_spert`` from scratch.

DELETE = object()


def _set(path, value):
    """A mutation that sets records[path...] = value (or deletes it if value is DELETE)."""

    def mutate(records):
        target = records
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return records

    return mutate


# (case id, mutation of the valid records, record index, field in the message
#  (None: the whole record), a further substring, whether to pass --types)
MALFORMED = [
    ("record_not_object", _set([2], ["Ford", "met"]), 2, None, "must be an object", False),
    ("missing_tokens", _set([1, "tokens"], DELETE), 1, "tokens", "missing", False),
    ("missing_entities", _set([0, "entities"], DELETE), 0, "entities", "missing", False),
    ("missing_relations", _set([3, "relations"], DELETE), 3, "relations", "missing", False),
    ("tokens_not_list", _set([1, "tokens"], "The University"), 1, "tokens", "list", False),
    ("token_empty", _set([2, "tokens", 3], ""), 2, "tokens[3]", '""', False),
    ("token_whitespace", _set([0, "tokens", 1], " \t"), 0, "tokens[1]", "non-empty", False),
    ("token_not_string", _set([0, "tokens", 4], 5), 0, "tokens[4]", "got 5", False),
    ("entities_not_list", _set([2, "entities"], {"type": "Peop"}), 2, "entities", "list", False),
    ("entity_not_object", _set([1, "entities", 1], [3, 4, "Loc"]), 1, "entities[1]", "object", False),
    ("entity_missing_type", _set([2, "entities", 3, "type"], DELETE), 2, "entities[3].type", "missing", False),
    ("entity_missing_start", _set([0, "entities", 1, "start"], DELETE), 0, "entities[1].start", "missing", False),
    ("entity_missing_end", _set([1, "entities", 0, "end"], DELETE), 1, "entities[0].end", "missing", False),
    ("entity_type_empty", _set([0, "entities", 0, "type"], ""), 0, "entities[0].type", "non-empty", False),
    ("entity_start_string", _set([0, "entities", 2, "start"], "6"), 0, "entities[2].start", "integer", False),
    ("entity_end_float", _set([1, "entities", 1, "end"], 4.0), 1, "entities[1].end", "integer", False),
    ("entity_start_bool", _set([2, "entities", 0, "start"], False), 2, "entities[0].start", "integer", False),
    ("entity_start_negative", _set([0, "entities", 0, "start"], -1), 0, "entities[0].start", "negative", False),
    (
        "entity_end_equals_start",
        _set([2, "entities", 2, "end"], 2),
        2,
        "entities[2].end",
        "end (2) must be greater than start (2)",
        False,
    ),
    (
        "entity_end_before_start",
        _set([0, "entities", 1, "end"], 1),
        0,
        "entities[1].end",
        "end (1) must be greater than start (3)",
        False,
    ),
    ("entity_end_past_tokens", _set([1, "entities", 2, "end"], 10), 1, "entities[2].end", "9 tokens", False),
    ("relations_not_list", _set([0, "relations"], "none"), 0, "relations", "list", False),
    ("relation_not_object", _set([2, "relations", 1], [1, 3]), 2, "relations[1]", "object", False),
    ("relation_missing_type", _set([0, "relations", 2, "type"], DELETE), 0, "relations[2].type", "missing", False),
    ("relation_missing_head", _set([1, "relations", 0, "head"], DELETE), 1, "relations[0].head", "missing", False),
    ("relation_missing_tail", _set([2, "relations", 3, "tail"], DELETE), 2, "relations[3].tail", "missing", False),
    (
        "relation_head_out_of_range",
        _set([0, "relations", 0, "head"], 7),
        0,
        "relations[0].head",
        "entity index 7 does not exist (record has 3 entities)",
        False,
    ),
    (
        "relation_tail_negative",
        _set([2, "relations", 0, "tail"], -1),
        2,
        "relations[0].tail",
        "entity index -1 does not exist (record has 4 entities)",
        False,
    ),
    ("relation_head_string", _set([1, "relations", 1, "head"], "2"), 1, "relations[1].head", "integer", False),
    ("relation_head_equals_tail", _set([0, "relations", 1, "tail"], 1), 0, "relations[1].tail", "same entity", False),
    ("orig_id_list", _set([1, "orig_id"], ["uoft", 7]), 1, "orig_id", "string or an integer", False),
    (
        "unknown_entity_type",
        _set([2, "entities", 1, "type"], "Company"),
        2,
        "entities[1].type",
        'unknown entity type "Company"',
        True,
    ),
    (
        "unknown_relation_type",
        _set([1, "relations", 1, "type"], "Part_Of"),
        1,
        "relations[1].type",
        'unknown relation type "Part_Of"',
        True,
    ),
]

# Files that are broken as a whole: (case id, file content, what the message says after "error: FILE: ").
BROKEN_FILES = [
    (
        "broken_json",
        '[{"tokens": ["a"], "entities": [], "relations": []},\n  {"tokens": ["b"]',
        "not valid JSON: Expecting ',' delimiter: line 2 column 19",
    ),
    ("trailing_comma", '[{"tokens": ["a"], "entities": [], "relations": []},]', "not valid JSON: "),
    ("empty_file", "", "not valid JSON: Expecting value: line 1 column 1"),
    (
        "top_level_object",
        '{"tokens": ["a"], "entities": [], "relations": []}',
        "expected a JSON list of records, got an object",
    ),
    ("latin1", b'[{"tokens": ["caf\xe9"], "entities": [], "relations": []}]', "not valid UTF-8 text"),
]

_RUNNER = r"""
import json, os, runpy, sys
jobs = json.load(sys.stdin)
import spacy_spert.cli  # what `python -m spacy_spert` imports, paid once
import spacy
spacy.blank("en")  # load the language data once too
codes = []
for job in jobs:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(job["cwd"])
            for fd, name in ((1, job["out"]), (2, job["err"])):
                os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            sys.argv = ["-m"] + job["args"]
            try:
                runpy.run_module("spacy_spert", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(status))
print(json.dumps(codes))
"""


def _spawn_cli(args, cwd):
    """Run ``python -m spacy_spert ARGS`` in a new interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "spacy_spert", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _run_cli_batch(jobs, logdir):
    """Run ``python -m spacy_spert ARGS`` for each (args, cwd) in ``jobs``, each in
    its own process. RETURNS: a list of CompletedProcess."""
    if not hasattr(os, "fork"):
        return [_spawn_cli(args, cwd) for args, cwd in jobs]
    specs = [
        {"args": list(args), "cwd": str(cwd), "out": str(logdir / f"{i}.out"), "err": str(logdir / f"{i}.err")}
        for i, (args, cwd) in enumerate(jobs)
    ]
    runner = subprocess.run(
        [sys.executable, "-c", _RUNNER], input=json.dumps(specs), capture_output=True, text=True, timeout=600
    )
    assert runner.returncode == 0, runner.stderr
    codes = json.loads(runner.stdout.strip().splitlines()[-1])
    return [
        subprocess.CompletedProcess(
            spec["args"],
            code,
            Path(spec["out"]).read_text(encoding="utf8"),
            Path(spec["err"]).read_text(encoding="utf8"),
        )
        for spec, code in zip(specs, codes)
    ]


@pytest.fixture(scope="module")
def error_runs(tmp_path_factory):
    """Run the CLI for every MALFORMED and BROKEN_FILES case (each in its own
    directory holding CASE_ID.json) and a few more error cases, as one batch.
    RETURNS: {case id: (dir, CompletedProcess)}."""
    jobs = {}
    for case_id, mutate, *_rest, use_types in MALFORMED:
        workdir = tmp_path_factory.mktemp(case_id)
        content = json.dumps(mutate(copy.deepcopy(small_records())))
        (workdir / f"{case_id}.json").write_text(content, encoding="utf8")
        args = ["convert", f"{case_id}.json", "out.spacy"]
        if use_types:
            args += ["--types", str(SMALL_TYPES)]
        jobs[case_id] = (args, workdir)
    for case_id, content, _message in BROKEN_FILES:
        workdir = tmp_path_factory.mktemp(case_id)
        path = workdir / f"{case_id}.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf8")
        jobs[case_id] = (["convert", f"{case_id}.json", "out.spacy"], workdir)
    # Missing files, a bad types file, an unknown language, no command.
    for case_id, args in [
        ("missing_input", ["convert", "nope.json", "out.spacy"]),
        ("missing_types", ["convert", "ok.json", "out.spacy", "--types", "missing_types.json"]),
        ("bad_types", ["convert", "ok.json", "out.spacy", "--types", "types.json"]),
        ("bad_lang", ["convert", "ok.json", "out.spacy", "--lang", "no-such-lang"]),
        ("usage", []),
    ]:
        workdir = tmp_path_factory.mktemp(case_id)
        (workdir / "ok.json").write_text(SMALL.read_text(encoding="utf8"), encoding="utf8")
        (workdir / "types.json").write_text('{"entities": {}}', encoding="utf8")
        jobs[case_id] = (args, workdir)
    results = _run_cli_batch(list(jobs.values()), tmp_path_factory.mktemp("logs"))
    return {case_id: (job[1], result) for (case_id, job), result in zip(jobs.items(), results)}


def _assert_one_line_error(result, workdir, *parts):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for part in parts:
        assert part in lines[0]
    assert result.stdout == ""
    assert not (workdir / "out.spacy").exists()
    assert sorted(os.listdir(workdir)) == sorted(p for p in os.listdir(workdir) if p.endswith(".json"))


# The command-line tests run real processes (a module fixture starts one per
# case, ~10 s); test_malformed_in_process covers the same cases in-process.
@pytest.mark.slow
@pytest.mark.parametrize(
    "case_id,record,field,detail", [(c[0], c[2], c[3], c[4]) for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_cli_malformed_record(error_runs, case_id, record, field, detail):
    workdir, result = error_runs[case_id]
    parts = [f"error: {case_id}.json: record {record}: ", detail]
    if field is not None:
        parts.append(f"record {record}: field '{field}': ")
    _assert_one_line_error(result, workdir, *parts)


@pytest.mark.slow
@pytest.mark.parametrize("case_id,message", [(c[0], c[2]) for c in BROKEN_FILES], ids=[c[0] for c in BROKEN_FILES])
def test_cli_broken_file(error_runs, case_id, message):
    workdir, result = error_runs[case_id]
    _assert_one_line_error(result, workdir, f"error: {case_id}.json: {message}")


@pytest.mark.parametrize("case_id", [c[0] for c in MALFORMED])
def test_malformed_in_process(case_id, nlp):
    """The same cases through records_to_docs: the error names record and field."""
    _cid, mutate, record, field, detail, use_types = next(c for c in MALFORMED if c[0] == case_id)
    types = read_types(SMALL_TYPES) if use_types else None
    with pytest.raises(ConversionError) as info:
        records_to_docs(mutate(copy.deepcopy(small_records())), nlp.vocab, types=types, source="in.json")
    assert (info.value.record, info.value.field) == (record, field)
    assert detail in str(info.value)
    assert str(info.value).startswith(f"in.json: record {record}: ")


def test_cli_missing_files_bad_types_and_lang(error_runs):
    workdir, result = error_runs["missing_input"]
    _assert_one_line_error(result, workdir, "error: nope.json: No such file or directory")
    workdir, result = error_runs["missing_types"]
    _assert_one_line_error(result, workdir, "error: missing_types.json: No such file or directory")
    workdir, result = error_runs["bad_types"]
    _assert_one_line_error(result, workdir, "error: types.json: field 'relations': missing")
    workdir, result = error_runs["bad_lang"]
    _assert_one_line_error(result, workdir, "error: unknown language code 'no-such-lang'")


def test_cli_usage(error_runs):
    _workdir, result = error_runs["usage"]
    assert result.returncode == 2
    assert "Usage: python -m spacy_spert" in result.stderr
    assert "  convert  " in result.stderr  # the commands are listed
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """``python -m spacy_spert`` started from scratch (concurrently): a success
    and an error. RETURNS: {name: (dir, CompletedProcess)}."""
    ok_dir = tmp_path_factory.mktemp("spawn_ok")
    bad_dir = tmp_path_factory.mktemp("spawn_bad")
    records = small_records()
    records[2]["entities"][2]["end"] = 2
    (bad_dir / "bad.json").write_text(json.dumps(records), encoding="utf8")
    jobs = {
        "ok": (
            ["convert", str(SMALL), "sub/dir/small.spacy", "--types", str(SMALL_TYPES), "--spans-key", "gold"],
            ok_dir,
        ),
        "bad": (["convert", "bad.json", "out.spacy"], bad_dir),
    }
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(_spawn_cli, *job) for name, job in jobs.items()}
        return {name: (jobs[name][1], future.result()) for name, future in futures.items()}


@pytest.mark.slow
def test_cli_success(spawned, nlp):
    workdir, result = spawned["ok"]
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Converted 4 docs from {SMALL} to sub/dir/small.spacy\n"
    assert result.stderr == ""
    docs = read_docbin(workdir / "sub" / "dir" / "small.spacy", nlp.vocab)
    assert [len(d.spans["gold"]) for d in docs] == [3, 3, 4, 0]
    assert [len(d._.relations) for d in docs] == [3, 2, 4, 0]
    assert os.listdir(workdir / "sub" / "dir") == ["small.spacy"]


def test_cli_error_spawned(spawned):
    workdir, result = spawned["bad"]
    _assert_one_line_error(
        result, workdir, "error: bad.json: record 2: field 'entities[2].end': end (2) must be greater than start (2)"
    )


# ---------------------------------------------------------------------------
# Real data (not part of the repository; see benchmark_datasets in conftest.py)


def test_conll04_dev_smoke(tmp_path, nlp):
    dev = benchmark_file("conll04", "conll04_dev.json")
    types = benchmark_file("conll04", "conll04_types.json")
    out = tmp_path / "dev.spacy"
    n = convert_file(dev, out, types_path=types)
    assert n == 231
    docs = read_docbin(out, nlp.vocab)
    assert len(docs) == 231
    assert sum(len(doc.spans["sc"]) for doc in docs) == 893
    assert sum(len(doc._.relations) for doc in docs) == 343
    assert {s.label_ for doc in docs for s in doc.spans["sc"]} == {"Loc", "Org", "Peop", "Other"}
    assert {r["label"] for doc in docs for r in doc._.relations} == {
        "Work_For",
        "Kill",
        "OrgBased_In",
        "Live_In",
        "Located_In",
    }
    records = json.loads(dev.read_text(encoding="utf8"))
    for record in records:
        record["orig_id"] = str(record["orig_id"])
    assert docs_to_records(docs) == records
