"""Tests for spacy_spert.io.importers and ``python -m spacy_spert import``.

Each test writes small files in the documented shape of the tool's output
(Prodigy rel.manual JSONL from ``db-out``, brat standoff, Label Studio's JSON
export) and checks what comes out exactly: tokens, entities with labels and
token offsets, relations with labels, head and tail, and the report.
"""

import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_spert.cli import app
from spacy_spert.io.importers import import_docs, import_file
from spacy_spert.io.spert_json import ConversionError, docs_to_records, read_docbin

runner = CliRunner()
NLP = spacy.blank("en")
TEXT = "Anna Smith works for Acme Corp in Oslo ."


def ents(doc, key="sc"):
    return [(span.start, span.end, span.label_) for span in doc.spans[key]]


def rels(doc):
    return [
        (r["head_start"], r["head_end"], r["tail_start"], r["tail_end"], r["label"], r["head_label"], r["tail_label"])
        for r in doc._.relations
    ]


# ---------------------------------------------------------------------------
# Writers of each tool's format


def prodigy_task(text, spans, relations=(), answer="accept", by_index=()):
    """A rel.manual task as Prodigy saves it: tokens of spaCy's English
    tokenizer, ``spans`` given as (token_start, token_end inclusive, label),
    ``relations`` as (head span, child span, label) with head_span/child_span,
    ``by_index`` as (head token, child token, label) without them."""
    doc = NLP.make_doc(text)
    tokens = [
        {"text": t.text, "start": t.idx, "end": t.idx + len(t), "id": t.i, "ws": bool(t.whitespace_)} for t in doc
    ]
    span_dicts = [
        {
            "text": doc[s : e + 1].text,
            "start": doc[s].idx,
            "end": doc[e].idx + len(doc[e]),
            "token_start": s,
            "token_end": e,
            "type": "span",
            "label": label,
        }
        for s, e, label in spans
    ]
    rel_dicts = [
        {
            "head": span_dicts[h]["token_end"],
            "child": span_dicts[c]["token_end"],
            "label": label,
            "head_span": span_dicts[h],
            "child_span": span_dicts[c],
            "color": "#c5bdf4",
        }
        for h, c, label in relations
    ]
    rel_dicts += [{"head": h, "child": c, "label": label} for h, c, label in by_index]
    return {
        "text": text,
        "_input_hash": 1,
        "_task_hash": 2,
        "tokens": tokens,
        "spans": span_dicts,
        "relations": rel_dicts,
        "_view_id": "relations",
        "answer": answer,
    }


def write_jsonl(path, tasks):
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks), encoding="utf8")
    return path


def write_brat(folder, name, text, ann):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_bytes(text.encode("utf8"))
    (folder / f"{name}.ann").write_bytes("".join(line + "\n" for line in ann).encode("utf8"))
    return folder / f"{name}.ann"


def ls_region(rid, text, start, end, *labels):
    return {
        "id": rid,
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "origin": "manual",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": list(labels)},
    }


def ls_relation(from_id, to_id, *labels, direction="right"):
    return {"from_id": from_id, "to_id": to_id, "type": "relation", "direction": direction, "labels": list(labels)}


def ls_task(task_id, text, result, **extra):
    annotation = {
        "id": 100 + task_id,
        "completed_by": 1,
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "lead_time": 3.2,
        "task": task_id,
    }
    return {"id": task_id, "data": {"text": text}, "annotations": [annotation], "predictions": [], **extra}


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf8")
    return path


# ---------------------------------------------------------------------------
# Prodigy


def test_prodigy_round_trip(tmp_path):
    """Overlapping entities, a relation whose head comes after its tail, a
    relation given by token indices only; only accepted answers."""
    tasks = [
        prodigy_task(
            TEXT,
            [(0, 1, "Peop"), (4, 5, "Org"), (4, 4, "Org"), (7, 7, "Loc")],
            relations=[(1, 0, "Employs")],
            by_index=[(5, 7, "OrgBased_In"), (0, 4, "Knows")],
        ),
        prodigy_task("Bob  left .", [(0, 0, "Peop")], answer="reject"),
        prodigy_task("Bob left .", [], answer="ignore"),
        prodigy_task("Eve  met   Bob .", [(0, 0, "Peop"), (4, 4, "Peop")], relations=[(0, 1, "Meets")]),
    ]
    docs, report = import_docs("prodigy", write_jsonl(tmp_path / "rel.jsonl", tasks))
    assert [doc.text for doc in docs] == [TEXT, "Eve  met   Bob ."]  # the task's tokens and whitespace
    assert [t.text for t in docs[1]] == ["Eve", " ", "met", "  ", "Bob", "."]
    assert ents(docs[0]) == [(0, 2, "Peop"), (4, 6, "Org"), (4, 5, "Org"), (7, 8, "Loc")]
    assert rels(docs[0]) == [
        (4, 6, 0, 2, "Employs", "Org", "Peop"),
        (4, 6, 7, 8, "OrgBased_In", "Org", "Loc"),  # token 5 ends "Acme Corp"
        (0, 2, 4, 5, "Knows", "Peop", "Org"),  # token 4 ends "Acme" (and starts "Acme Corp")
    ]
    assert ents(docs[1]) == [(0, 1, "Peop"), (4, 5, "Peop")]
    assert rels(docs[1]) == [(0, 1, 4, 5, "Meets", "Peop", "Peop")]
    assert [doc.user_data["orig_id"] for doc in docs] == ["1", "4"]
    assert (report.docs, report.entities, report.relations, report.expanded) == (2, 6, 4, 0)
    assert dict(report.skipped) == {"'reject' answers": 1, "'ignore' answers": 1}
    assert not report.dropped


def test_prodigy_split_sentences(tmp_path):
    """The task's tokens are split into sentences; a relation across them is counted."""
    text = "Anna Smith works for Acme . She likes Oslo ."
    task = prodigy_task(
        text,
        [(0, 1, "Peop"), (4, 4, "Org"), (6, 6, "Peop"), (8, 8, "Loc")],
        relations=[(0, 1, "Work_For"), (2, 3, "Likes"), (2, 0, "Coref")],
    )
    docs, report = import_docs("prodigy", write_jsonl(tmp_path / "rel.jsonl", [task]), split_sentences=True)
    assert [doc.text for doc in docs] == ["Anna Smith works for Acme . ", "She likes Oslo ."]
    assert [rels(doc) for doc in docs] == [
        [(0, 2, 4, 5, "Work_For", "Peop", "Org")],
        [(0, 1, 2, 3, "Likes", "Peop", "Loc")],
    ]
    assert dict(report.dropped) == {"relations across sentence boundaries": 1}


def test_prodigy_relation_to_a_plain_token_is_counted(tmp_path):
    task = prodigy_task(TEXT, [(0, 1, "Peop")], by_index=[(1, 2, "Subj")])
    docs, report = import_docs("prodigy", write_jsonl(tmp_path / "rel.jsonl", [task]))
    assert docs[0]._.relations == []
    assert dict(report.dropped) == {"relations with an argument that is not a labelled span": 1}


def _mutated(mutate):
    task = prodigy_task(TEXT, [(0, 1, "Peop"), (4, 5, "Org")], relations=[(0, 1, "Work_For")])
    mutate(task)
    return task


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda t: t.pop("answer"), "line 2: field 'answer': missing"),
        (lambda t: t.update(answer="maybe"), 'line 2: field \'answer\': must be "accept", "reject" or "ignore"'),
        (lambda t: t.pop("tokens"), "line 2: field 'tokens': missing"),
        (lambda t: t["spans"][1].pop("label"), "line 2: field 'spans[1].label': missing"),
        (lambda t: t["spans"][1].update(start="21"), "line 2: field 'spans[1].start': must be an integer, got \"21\""),
        (
            lambda t: t["spans"][1].update(token_end=4),
            "line 2: field 'spans[1]': token_start/token_end 4/4 do not match the characters 21-30, which are tokens 4/5",
        ),
        (
            lambda t: t["relations"].append({"head": 40, "child": 1, "label": "X"}),
            "line 2: field 'relations[1].head': token 40 does not exist (the task has 9 tokens)",
        ),
        (
            lambda t: t["relations"][0].update(label=""),
            "line 2: field 'relations[0].label': must be a non-empty string",
        ),
        (
            lambda t: t["tokens"][1].update(start=6),
            "line 2: field 'tokens[1].start': token \"Smith\" is at character 5",
        ),
        (lambda t: t["tokens"][0].update(ws=False), "field 'tokens[1].start'"),
        (lambda t: t.update(relations={}), "line 2: field 'relations': must be a list, got {}"),
    ],
)
def test_prodigy_errors(tmp_path, mutate, message):
    good = prodigy_task("Bob left .", [(0, 0, "Peop")])
    path = write_jsonl(tmp_path / "rel.jsonl", [good, _mutated(mutate)])
    with pytest.raises(ConversionError) as info:
        import_docs("prodigy", path)
    assert str(info.value).startswith(f"{path}: line 2: ")
    assert message in str(info.value)


def test_prodigy_bad_json_line(tmp_path):
    path = tmp_path / "rel.jsonl"
    path.write_text(json.dumps(prodigy_task("Bob left .", [])) + '\n\n{"text": \n', encoding="utf8")
    with pytest.raises(ConversionError, match=r"rel.jsonl: line 3: not valid JSON: Expecting value \(column 10\)$"):
        import_docs("prodigy", path)


# ---------------------------------------------------------------------------
# brat


BRAT_TEXT = "Anna Smith works for Acme Corp in Oslo.\r\nShe met Bob."
BRAT_ANN = [
    "T1\tPeop 0 10\tAnna Smith",
    "T2\tOrg 21 30\tAcme Corp",
    "T3\tOrg 21 25\tAcme",
    "T4\tLoc 34 38\tOslo",
    "R1\tOrgBased_In Arg1:T2 Arg2:T4",
    "R2\tEmployed_By Arg1:T2 Arg2:T1",  # the head comes after the tail
    "T5\tPeop 41 44\tShe",
    "T6\tPeop 49 52\tBob",
    "R3\tMeets Arg1:T5 Arg2:T6",
]


def test_brat_round_trip(tmp_path):
    """CRLF counts two characters; a folder is searched recursively; the
    result reads back as the SpERT records written out by hand."""
    write_brat(tmp_path / "corpus" / "part1", "doc1", BRAT_TEXT, BRAT_ANN)
    write_brat(tmp_path / "corpus", "doc0", "Nothing here .", [])
    docs, report = import_docs("brat", tmp_path / "corpus")
    assert [doc.user_data["orig_id"] for doc in docs] == ["doc0", "part1/doc1"]
    assert docs[1].text == BRAT_TEXT
    assert docs_to_records(docs[1:]) == [
        {
            "tokens": [
                "Anna",
                "Smith",
                "works",
                "for",
                "Acme",
                "Corp",
                "in",
                "Oslo",
                ".",
                "\r\n",
                "She",
                "met",
                "Bob",
                ".",
            ],
            "entities": [
                {"type": "Peop", "start": 0, "end": 2},
                {"type": "Org", "start": 4, "end": 6},
                {"type": "Org", "start": 4, "end": 5},
                {"type": "Loc", "start": 7, "end": 8},
                {"type": "Peop", "start": 10, "end": 11},
                {"type": "Peop", "start": 12, "end": 13},
            ],
            "relations": [
                {"type": "OrgBased_In", "head": 1, "tail": 3},
                {"type": "Employed_By", "head": 1, "tail": 0},
                {"type": "Meets", "head": 4, "tail": 5},
            ],
            "orig_id": "part1/doc1",
        }
    ]
    assert ents(docs[0]) == [] and docs[0]._.relations == []
    assert (report.docs, report.entities, report.relations) == (2, 6, 3)
    assert not report.skipped and not report.dropped


def test_brat_duplicates_are_merged_and_counted(tmp_path):
    """A T line repeated under another id is one entity (relations through
    either id reach it); a repeated R line is one relation; the report counts
    both."""
    ann = [
        *BRAT_ANN,
        "T7\tPeop 0 10\tAnna Smith",  # T1 again
        "R4\tOrgBased_In Arg1:T2 Arg2:T4",  # R1 again
        "R5\tEmployed_By Arg1:T2 Arg2:T7",  # R2 through the duplicate id
    ]
    write_brat(tmp_path, "doc1", BRAT_TEXT, ann)
    docs, report = import_docs("brat", tmp_path)
    plain, _ = import_docs("brat", write_brat(tmp_path / "plain", "doc1", BRAT_TEXT, BRAT_ANN))
    assert docs_to_records(docs) == docs_to_records(plain)
    assert report.merged == {"entities": 1, "relations": 2}
    assert ("warn", "merged: 1 duplicate entities") in report.messages()
    assert ("warn", "merged: 2 duplicate relations") in report.messages()


def test_brat_byte_order_mark_is_read_without_it(tmp_path):
    """Notepad's UTF-8 files start with U+FEFF: in the .ann it is dropped; in
    the .txt it becomes a space, since brat counts it in the offsets."""
    folder = tmp_path / "bom"
    write_brat(folder, "doc1", BRAT_TEXT, BRAT_ANN)
    (folder / "doc1.ann").write_bytes(b"\xef\xbb\xbf" + (folder / "doc1.ann").read_bytes())
    docs, report = import_docs("brat", folder)
    plain, _ = import_docs("brat", write_brat(tmp_path / "plain", "doc1", BRAT_TEXT, BRAT_ANN))
    assert docs_to_records(docs) == docs_to_records(plain)
    assert report.byte_order_marks == 1
    shifted = [line.split("\t") for line in BRAT_ANN]
    for parts in shifted:
        if parts[0].startswith("T"):
            label, start, end = parts[1].split()
            parts[1] = f"{label} {int(start) + 1} {int(end) + 1}"
    write_brat(tmp_path / "txt_bom", "doc1", "\ufeff" + BRAT_TEXT, ["\t".join(parts) for parts in shifted])
    docs, report = import_docs("brat", tmp_path / "txt_bom")
    assert docs[0].text == " " + BRAT_TEXT and report.byte_order_marks == 1
    assert [(s.text, s.label_) for s in docs[0].spans["sc"]] == [(s.text, s.label_) for s in plain[0].spans["sc"]]


def test_brat_one_ann_file(tmp_path):
    """One .ann file as input, here with Windows line ends."""
    ann = write_brat(tmp_path, "doc1", BRAT_TEXT, [line + "\r" for line in BRAT_ANN])
    docs, _report = import_docs("brat", ann)
    assert [doc.user_data["orig_id"] for doc in docs] == ["doc1"]
    assert len(docs[0].spans["sc"]) == 6


def test_brat_unrepresentable_annotations_are_counted(tmp_path):
    ann = BRAT_ANN + [
        "T7\tOrg 21 25;26 30\tAcme Corp",  # discontinuous
        "R4\tOrgBased_In Arg1:T7 Arg2:T4",  # its relation
        "T8\tMeeting 45 48\tmet",  # an event trigger
        "E1\tMeeting:T8 Agent:T5 Partner:T6",
        "R5\tCause Arg1:E1 Arg2:T1",  # a relation with an event argument
        "A1\tNegated E1",
        "M1\tSpeculation E1",
        "N1\tReference T1 Wikipedia:123\tAnna Smith",
        "*\tEquiv T2 T7",
        "#1\tAnnotatorNotes T1\ta note",
        "",
    ]
    write_brat(tmp_path / "c", "doc1", BRAT_TEXT, ann)
    (tmp_path / "c" / "unannotated.txt").write_text("Not annotated yet .", encoding="utf8")
    docs, report = import_docs("brat", tmp_path / "c")
    assert len(docs) == 1
    assert len(docs[0].spans["sc"]) == 6 and len(docs[0]._.relations) == 3  # as without the extra lines
    assert dict(report.dropped) == {
        "discontinuous entities": 1,
        "relations with a left-out argument": 2,
        "events": 1,
        "event triggers": 1,
        "attributes": 2,
        "normalizations": 1,
        "equivalences": 1,
        "notes": 1,
    }
    assert dict(report.skipped) == {"texts without a .ann file": 1}


@pytest.mark.parametrize(
    "line,message",
    [
        ("T7\tLoc 34 38\tOsl", 'line 10: field \'text\': is "Osl", the .txt file has "Oslo" at 34 38'),
        ("T7\tLoc 34 38;39 40\tOslo", 'line 10: field \'text\': is "Oslo", the .txt file has "Oslo \\r" at'),
        ("T7\tLoc 34 x\tOslo", "line 10: field 'offsets': expected START END (or START END;START END)"),
        ("T7\tLoc 34 99\tOslo", "line 10: field 'offsets': 34 99 is not a span of the text (53 characters)"),
        ("T7\tLoc 34 38", "line 10: field 'text': a T line is ID<TAB>TYPE START END<TAB>TEXT"),
        ("R4\tX Arg1:T1 Arg2:T9", "line 10: field 'arguments': T9 is not defined in this file"),
        ("R4\tX Arg1:T1", "line 10: field 'arguments': a relation is TYPE Arg1:ID Arg2:ID"),
        ("R4\tX Arg1:T1 Arg2:T1", "line 10: field 'arguments': Arg1 and Arg2 are the same entity"),
        ("T1\tLoc 34 38\tOslo", "line 10: field 'id': the id T1 is used twice"),
        ("X1\tfoo", "line 10: field 'id': unknown annotation \"X1\""),
    ],
)
def test_brat_errors(tmp_path, line, message):
    ann = write_brat(tmp_path / "c", "doc1", BRAT_TEXT, BRAT_ANN + [line])
    with pytest.raises(ConversionError) as info:
        import_docs("brat", tmp_path / "c")
    assert str(info.value).startswith(f"{ann}: line 10: ")
    assert message in str(info.value)


def test_brat_ann_without_txt(tmp_path):
    ann = write_brat(tmp_path, "doc1", BRAT_TEXT, BRAT_ANN)
    (tmp_path / "doc1.txt").unlink()
    with pytest.raises(ConversionError, match=f"^{ann}: no text file doc1.txt next to it$"):
        import_docs("brat", tmp_path)


# ---------------------------------------------------------------------------
# Label Studio


def test_label_studio_round_trip(tmp_path):
    """Direction right/left/bi, a region with two labels, overlapping
    regions, the first non-cancelled annotation."""
    text = "Anna Smith works for Acme Corp in Oslo ."
    result = [
        ls_relation("org", "anna", "Employs"),  # relations may come before their regions
        ls_region("anna", text, 0, 10, "Peop"),
        ls_region("org", text, 21, 30, "Org"),
        ls_region("acme", text, 21, 25, "Org"),
        ls_region("oslo", text, 34, 38, "Loc", "City"),
        ls_relation("oslo", "org", "OrgBased_In", direction="left"),
        ls_relation("oslo", "anna", "Near", direction="bi"),
        ls_relation("anna", "oslo", "Lives_In", "Works_In"),
        ls_relation("anna", "acme", direction="right"),  # no label
        {"id": "mood", "type": "choices", "from_name": "mood", "to_name": "text", "value": {"choices": ["ok"]}},
    ]
    task = ls_task(1, text, result)
    task["annotations"].insert(0, {"id": 99, "result": [], "was_cancelled": True})
    task["annotations"].append({"id": 98, "result": [], "was_cancelled": False})
    tasks = [task, ls_task(2, "  \n", []), {"id": 3, "data": {"text": "Not annotated ."}, "annotations": []}]
    docs, report = import_docs("label-studio", write_json(tmp_path / "export.json", tasks))
    assert len(docs) == 1 and docs[0].user_data["orig_id"] == "1"
    assert ents(docs[0]) == [(0, 2, "Peop"), (4, 6, "Org"), (4, 5, "Org"), (7, 8, "Loc"), (7, 8, "City")]
    assert rels(docs[0]) == [
        (4, 6, 0, 2, "Employs", "Org", "Peop"),  # head after tail
        (4, 6, 7, 8, "OrgBased_In", "Org", "Loc"),  # "left": to -> from
        (0, 2, 7, 8, "Near", "Peop", "Loc"),  # "bi": the earlier entity is the head
        (0, 2, 7, 8, "Lives_In", "Peop", "Loc"),  # one relation per label, the region's first label
        (0, 2, 7, 8, "Works_In", "Peop", "Loc"),
    ]
    assert dict(report.skipped) == {
        "cancelled annotations": 1,
        "further annotations of a task (the first is imported)": 1,
        "empty texts": 1,
        "tasks without annotations": 1,
    }
    assert dict(report.dropped) == {"relations without a label": 1, "'choices' results": 1}


def test_label_studio_text_key(tmp_path):
    text = "Bob met Eve ."
    task = ls_task(1, text, [ls_region("a", text, 0, 3, "Peop")])
    task["data"] = {"sentence": text}
    path = write_json(tmp_path / "export.json", [task])
    with pytest.raises(
        ConversionError,
        match=r"record 0 \(id 1\): field 'data.text': missing \(the task's data has: "
        r"\"sentence\"; choose one with --text-key\)",
    ):
        import_docs("label-studio", path)
    docs, _report = import_docs("label-studio", path, text_key="sentence")
    assert ents(docs[0]) == [(0, 1, "Peop")]


def _ls_mutated(mutate):
    result = [
        ls_region("a", TEXT, 0, 10, "Peop"),
        ls_region("b", TEXT, 21, 30, "Org"),
        ls_relation("b", "a", "Employs"),
    ]
    task = ls_task(1, TEXT, result)
    mutate(task)
    return task


@pytest.mark.parametrize(
    "mutate,field,message",
    [
        (
            lambda t: t["annotations"][0]["result"][2].update(to_id="zz"),
            "annotations[0].result[2].to_id",
            'no region with id "zz" in this annotation',
        ),
        (
            lambda t: t["annotations"][0]["result"][1]["value"].update(text="Acme"),
            "annotations[0].result[1].value.text",
            'is "Acme", the text has "Acme Corp" at 21-30',
        ),
        (
            lambda t: t["annotations"][0]["result"][1]["value"].update(start=21.0),
            "annotations[0].result[1].value.start",
            "must be an integer, got 21.0",
        ),
        (
            lambda t: t["annotations"][0]["result"][1]["value"].update(labels=[]),
            "annotations[0].result[1].value.labels",
            "must be a non-empty list of labels, got []",
        ),
        (
            lambda t: t["annotations"][0]["result"][1]["value"].update(end=99),
            "annotations[0].result[1].value",
            "21-99 is not a span of the text (40 characters)",
        ),
        (
            lambda t: t["annotations"][0]["result"][2].update(direction="up"),
            "annotations[0].result[2].direction",
            'must be "right", "left" or "bi"',
        ),
        (
            lambda t: t["annotations"][0]["result"][2].update(to_id="b"),
            "annotations[0].result[2]",
            "from_id and to_id are the same region",
        ),
        (lambda t: t["annotations"][0]["result"][0].pop("type"), "annotations[0].result[0].type", "missing"),
        (lambda t: t.update(data="text"), "data", 'must be an object, got "text"'),
    ],
)
def test_label_studio_errors(tmp_path, mutate, field, message):
    tasks = [ls_task(0, "Bob left .", []), _ls_mutated(mutate)]
    path = write_json(tmp_path / "export.json", tasks)
    with pytest.raises(ConversionError) as info:
        import_docs("label-studio", path)
    assert str(info.value).startswith(f"{path}: record 1 (id 1): field '{field}': {message}")


def test_label_studio_json_min_is_refused(tmp_path):
    path = write_json(tmp_path / "export.json", {"text": TEXT, "label": []})
    with pytest.raises(ConversionError, match=r"expected a list of tasks .*not JSON-MIN.*, got an object"):
        import_docs("label-studio", path)


# ---------------------------------------------------------------------------
# Shared: alignment, sentences, types, pipelines


def test_misaligned_span_is_expanded_and_reported(tmp_path):
    text = "Anna Smith works for Acme Corp. in Oslo ."
    result = [
        ls_region("a", text, 1, 10, "Peop"),
        ls_region("b", text, 21, 30, "Org"),
        ls_region("c", text, 34, 40, "Loc"),
        ls_relation("b", "c", "OrgBased_In"),
    ]
    path = write_json(tmp_path / "export.json", [ls_task(5, text, result)])
    docs, report = import_docs("label-studio", path)
    assert [span.text for span in docs[0].spans["sc"]] == ["Anna Smith", "Acme Corp.", "Oslo"]
    assert ents(docs[0]) == [(0, 2, "Peop"), (4, 6, "Org"), (7, 8, "Loc")]
    assert rels(docs[0]) == [(4, 6, 7, 8, "OrgBased_In", "Org", "Loc")]
    assert (report.expanded, report.trimmed) == (2, 1)  # "Oslo " loses its space, no expansion needed
    assert report.examples == [
        f'{path}, record 0 (id 5): "nna Smith" -> "Anna Smith"',
        f'{path}, record 0 (id 5): "Acme Corp" -> "Acme Corp."',
    ]
    with pytest.raises(ConversionError) as info:
        import_docs("label-studio", path, strict=True)
    assert str(info.value) == (
        f"{path}: record 0 (id 5): field 'annotations[0].result[0].value': \"nna Smith\" (1-10) does not fall on token "
        'boundaries: the tokens are "Anna Smith" (0-10); fix the offsets, or leave out --strict to expand it to '
        "whole tokens"
    )


def test_whitespace_only_span_is_an_error(tmp_path):
    ann = write_brat(tmp_path, "d", "Anna  Smith", ["T1\tPeop 4 6\t  "])
    with pytest.raises(ConversionError, match=f"^{ann}: line 1: field 'offsets': 4-6 covers only whitespace$"):
        import_docs("brat", tmp_path)


def test_split_sentences_counts_crossing_relations(tmp_path):
    text = "Anna Smith works for Acme Corp in Oslo.\n\nShe met Bob. Bob Jones\nand Eve left."
    ann = [
        "T1\tPeop 0 10\tAnna Smith",
        "T2\tOrg 21 30\tAcme Corp",
        "T3\tPeop 41 44\tShe",
        "T4\tPeop 49 52\tBob",
        "T5\tPeop 54 63\tBob Jones",
        "R1\tWork_For Arg1:T1 Arg2:T2",
        "R2\tMeets Arg1:T3 Arg2:T4",
        "R3\tCoref Arg1:T3 Arg2:T1",
        "R4\tMeets Arg1:T4 Arg2:T5",
    ]
    write_brat(tmp_path / "c", "d", text, ann)
    whole, report = import_docs("brat", tmp_path / "c")
    assert len(whole) == 1 and len(whole[0]._.relations) == 4
    docs, report = import_docs("brat", tmp_path / "c", split_sentences=True)
    assert [doc.text for doc in docs] == [
        "Anna Smith works for Acme Corp in Oslo.\n\n",
        "She met Bob. ",
        "Bob Jones\nand Eve left.",
    ]
    assert [ents(doc) for doc in docs] == [
        [(0, 2, "Peop"), (4, 6, "Org")],
        [(0, 1, "Peop"), (2, 3, "Peop")],
        [(0, 2, "Peop")],
    ]
    assert [rels(doc) for doc in docs] == [
        [(0, 2, 4, 6, "Work_For", "Peop", "Org")],
        [(0, 1, 2, 3, "Meets", "Peop", "Peop")],
        [],
    ]
    assert dict(report.dropped) == {"relations across sentence boundaries": 2}
    assert (report.docs, report.entities, report.relations) == (3, 5, 2)
    assert [doc.user_data["orig_id"] for doc in docs] == ["d", "d", "d"]


def test_split_keeps_an_entity_across_a_boundary_whole(tmp_path):
    text = "It was Yahoo! Labs that won."
    ann = write_brat(tmp_path, "d", text, ["T1\tOrg 7 18\tYahoo! Labs"])
    nlp = spacy.blank("en")
    assert [s.text for s in nlp.add_pipe("sentencizer")(nlp.make_doc(text)).sents] == [
        "It was Yahoo!",
        "Labs that won.",
    ]
    docs, _report = import_docs("brat", ann, split_sentences=True)
    assert [doc.text for doc in docs] == [text]
    assert ents(docs[0]) == [(2, 5, "Org")]


def test_model_tokenizer_and_sentence_splitter(tmp_path):
    """A pipeline's tokenizer (here a special case) and its own sentence
    component (here a sentencizer that splits on ';' only) are used; the
    output docs keep no annotation of the pipeline."""
    nlp = spacy.blank("en")
    nlp.tokenizer.add_special_case("AcmeCorp", [{"ORTH": "Acme"}, {"ORTH": "Corp"}])
    nlp.add_pipe("sentencizer", config={"punct_chars": [";"]})
    nlp.to_disk(tmp_path / "pipeline")
    text = "Anna works for AcmeCorp really; in Oslo."
    ann = write_brat(
        tmp_path,
        "d",
        text,
        ["T1\tPeop 0 4\tAnna", "T2\tOrg 15 19\tAcme", "T3\tLoc 35 39\tOslo", "R1\tWork_For Arg1:T1 Arg2:T2"],
    )
    docs, report = import_docs("brat", ann, model=str(tmp_path / "pipeline"), split_sentences=True)
    assert [[t.text for t in doc] for doc in docs] == [
        ["Anna", "works", "for", "Acme", "Corp", "really", ";"],
        ["in", "Oslo", "."],
    ]
    assert [ents(doc) for doc in docs] == [[(0, 1, "Peop"), (3, 4, "Org")], [(1, 2, "Loc")]]
    assert report.expanded == 0
    assert not docs[0].has_annotation("SENT_START")
    with pytest.raises(ValueError, match="not both"):
        import_docs("brat", ann, model=str(tmp_path / "pipeline"), lang="de")


def test_types_file(tmp_path):
    types = write_json(tmp_path / "types.json", {"entities": {"Peop": {}, "Org": {}}, "relations": {"Work_For": {}}})
    ann = write_brat(
        tmp_path / "c",
        "d",
        "Anna works for Acme .",
        ["T1\tPeop 0 4\tAnna", "T2\tOrg 15 19\tAcme", "R1\tEmploys Arg1:T2 Arg2:T1"],
    )
    with pytest.raises(ConversionError) as info:
        import_docs("brat", ann, types_path=types)
    assert str(info.value) == (
        f"{ann}: line 3: field 'type': unknown relation type \"Employs\" (the types file has: Work_For)"
    )


def test_nothing_to_import(tmp_path):
    path = write_jsonl(tmp_path / "rel.jsonl", [prodigy_task("Bob left .", [], answer="reject")])
    with pytest.raises(ConversionError, match=r"rel.jsonl: nothing to import \(1 'reject' answers\)"):
        import_docs("prodigy", path)


def test_import_file_writes_a_docbin(tmp_path):
    path = write_jsonl(tmp_path / "rel.jsonl", [prodigy_task(TEXT, [(0, 1, "Peop"), (4, 5, "Org")], [(0, 1, "W")])])
    report = import_file("prodigy", path, tmp_path / "out" / "train.spacy", spans_key="gold")
    docs = read_docbin(tmp_path / "out" / "train.spacy")
    assert report.docs == 1
    assert ents(docs[0], "gold") == [(0, 2, "Peop"), (4, 6, "Org")]
    assert rels(docs[0]) == [(0, 2, 4, 6, "W", "Peop", "Org")]
    assert docs[0].user_data["orig_id"] == "1"


# ---------------------------------------------------------------------------
# The command line


def invoke(*args):
    return runner.invoke(app, ["import", *map(str, args)])


def test_cli_each_format(tmp_path):
    jsonl = write_jsonl(
        tmp_path / "rel.jsonl",
        [prodigy_task(TEXT, [(0, 1, "Peop"), (4, 5, "Org")], [(1, 0, "E")]), prodigy_task(TEXT, [], answer="reject")],
    )
    write_brat(tmp_path / "brat", "d", BRAT_TEXT, BRAT_ANN + ["T9\tOrg 21 25;26 30\tAcme Corp"])
    result = [ls_region("a", TEXT, 0, 9, "Peop"), ls_region("b", TEXT, 21, 30, "Org"), ls_relation("b", "a", "E")]
    export = write_json(tmp_path / "export.json", [ls_task(1, TEXT, result)])
    for fmt, source, expected in [
        ("prodigy", jsonl, ["Imported docs: 1, entities: 2, relations: 1", "skipped: 1 'reject' answers"]),
        (
            "brat",
            tmp_path / "brat",
            ["Imported docs: 2, entities: 6, relations: 3", "left out: 1 discontinuous entities"],
        ),
        (
            "label-studio",
            export,
            [
                "Imported docs: 1, entities: 2, relations: 1",
                "1 entities not on token boundaries, expanded to whole tokens",
                f'{export}, record 0 (id 1): "Anna Smit" -> "Anna Smith"',
            ],
        ),
    ]:
        output = tmp_path / f"{fmt}.spacy"
        options = ["--split-sentences"] if fmt == "brat" else []
        res = invoke(fmt, source, output, "--lang", "en", *options)
        assert res.exit_code == 0, res.output
        printed = " ".join(res.stdout.split())  # wasabi wraps at 80 columns
        for line in expected + [f"Saved {output}"]:
            assert line in printed
        docs = read_docbin(output)
        assert sum(len(doc._.relations) for doc in docs) == int(expected[0][-1])


def test_cli_error_leaves_no_output(tmp_path):
    ann = write_brat(tmp_path / "brat", "d", BRAT_TEXT, BRAT_ANN + ["T7\tLoc 34 38\tOsl"])
    output = tmp_path / "out.spacy"
    res = invoke("brat", tmp_path / "brat", output)
    assert res.exit_code == 1
    assert res.stderr == (f'error: {ann}: line 10: field \'text\': is "Osl", the .txt file has "Oslo" at 34 38\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brat"]
    output.write_bytes(b"old")  # an existing output stays as it was
    assert invoke("brat", tmp_path / "brat", output).exit_code == 1
    assert output.read_bytes() == b"old"


def test_cli_strict(tmp_path):
    write_brat(tmp_path / "brat", "d", TEXT, ["T1\tPeop 0 9\tAnna Smit"])
    res = invoke("brat", tmp_path / "brat", tmp_path / "out.spacy", "--strict")
    assert res.exit_code == 1
    assert "line 1: field 'offsets': \"Anna Smit\" (0-9) does not fall on token boundaries" in res.stderr
    assert not (tmp_path / "out.spacy").exists()


def test_cli_usage_errors(tmp_path):
    res = invoke("doccano", tmp_path / "in.jsonl", tmp_path / "out.spacy")
    assert res.exit_code == 2
    assert res.stderr == "error: unknown FORMAT 'doccano' (choose prodigy, brat, label-studio)\n"
    res = invoke("prodigy", tmp_path / "missing.jsonl", tmp_path / "out.spacy")
    assert res.exit_code == 1 and res.stderr == f"error: {tmp_path / 'missing.jsonl'}: No such file or directory\n"
    res = invoke("brat", tmp_path, tmp_path / "out.spacy", "--lang", "xx-nope")
    assert res.exit_code == 1 and "unknown language code 'xx-nope'" in res.stderr


@pytest.mark.parametrize(
    "fmt,name,data,message",
    [
        ("prodigy", "p.jsonl", b'{"text": "a", "n": ' + b"9" * 5000 + b"}\n", "p.jsonl: line 1: not JSON this reads"),
        ("prodigy", "p.jsonl", b'{"text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "nested too deeply"),
        ("label-studio", "ls.json", b"[" * 100_000 + b"]" * 100_000, "ls.json: not JSON this reads: nested too deeply"),
        ("label-studio", "ls.json", b'[{"data": {"text": "a"}, "x": NaN}]', "NaN is not a JSON value"),
    ],
    ids=["prodigy-huge-int", "prodigy-deep", "label-studio-deep", "label-studio-nan"],
)
def test_hostile_json_is_named_not_a_traceback(tmp_path, fmt, name, data, message):
    """Deep nesting, huge integers and non-finite numbers are one-line errors
    naming the file (and line), never a RecursionError traceback."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConversionError, match="not JSON this reads") as info:
        import_docs(fmt, path)
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize(
    "name,data,export",
    [
        ("min.json", json.dumps([{"id": 1, "text": TEXT, "label": [], "annotator": 1}]), "JSON-MIN"),
        ("export.csv", "annotation_id,annotator,id,label,text\n1,1,1,[],Anna\n", "CSV"),
        ("export.tsv", "annotation_id\tannotator\tid\tlabel\ttext\n1\t1\t1\t[]\tAnna\n", "TSV"),
        ("export.conll", "-DOCSTART- -X- O\n\nAnna -X- _ B-Peop\nSmith -X- _ I-Peop\n", "CONLL2003"),
    ],
    ids=["json-min", "csv", "tsv", "conll"],
)
def test_label_studio_other_exports_are_named(tmp_path, name, data, export):
    """Label Studio's other exports: one line naming the export found and
    saying to choose the JSON export (not "field 'data': missing")."""
    path = tmp_path / name
    path.write_text(data, encoding="utf8")
    with pytest.raises(ConversionError) as info:
        import_docs("label-studio", path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and f"Label Studio's {export} export" in message
    assert 'choosing "JSON" in Label Studio\'s Export dialog' in message and "'data': missing" not in message
    assert len(message.splitlines()) == 1


def test_prodigy_line_errors_of_the_shared_reader(tmp_path):
    """Prodigy lines go through the one JSON-lines reader: a byte that is not
    UTF-8 is named with its line and place, an unpaired surrogate too."""
    good = json.dumps(prodigy_task("Bob left .", [])).encode("utf8")
    path = tmp_path / "rel.jsonl"
    path.write_bytes(good + b'\n{"text": "caf\xe9"}\n')
    with pytest.raises(ConversionError) as info:
        import_docs("prodigy", path)
    assert str(info.value) == f"{path}: line 2: not UTF-8 text (byte 14 of the line, 0xe9: invalid continuation byte)"
    path.write_bytes(good + b'\n\n{"text": "\\ud83d"}\n')
    with pytest.raises(ConversionError, match=r"rel.jsonl: line 3: not JSON this reads: .*unpaired surrogate U\+D83D"):
        import_docs("prodigy", path)


def test_whole_file_utf8_errors_name_line_and_byte(tmp_path):
    """Label Studio (a whole JSON file) and brat name the line and byte of a
    byte that is not UTF-8, and brat the file that holds it."""
    path = tmp_path / "export.json"
    path.write_bytes(b'[\n  {"data": {"text": "caf\xe9"}}\n]')
    with pytest.raises(ConversionError) as info:
        import_docs("label-studio", path)
    assert str(info.value) == (
        f"{path}: not valid UTF-8 text: line 2, byte 25 of the line (0xe9: invalid continuation byte)"
    )
    folder = write_brat(tmp_path / "brat", "doc1", BRAT_TEXT, BRAT_ANN).parent
    (folder / "doc1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ConversionError) as info:
        import_docs("brat", folder)
    assert str(info.value).startswith(f"{folder / 'doc1.txt'}: not valid UTF-8 text: line 1, byte 4 of the line")


# ---------------------------------------------------------------------------
# Label Studio: predictions, drafts and cancelled tasks are counted, once each


def ls_prediction(result, score=0.5):
    return {"id": 7, "model_version": "m", "score": score, "result": result}


def test_label_studio_counts_each_task_once(tmp_path):
    """A task skipped for one reason is counted once, under that reason; predictions and drafts are
    counted, not lost silently."""
    result = [ls_region("a", TEXT, 0, 10, "Peop"), ls_region("b", TEXT, 21, 30, "Org"), ls_relation("b", "a", "E")]
    cancelled = ls_task(2, TEXT, [])
    cancelled["annotations"] = [{"id": 1, "result": [], "was_cancelled": True}] * 2
    cancelled["predictions"] = [ls_prediction(result)]  # skipped by the annotator: not imported either way
    draft = ls_task(3, TEXT, [], drafts=[{"id": 5, "result": result}])
    draft["annotations"] = []
    draft["predictions"] = [ls_prediction(result)]
    predicted = {"id": 4, "data": {"text": TEXT}, "annotations": [], "predictions": [ls_prediction(result)] * 2}
    annotated = ls_task(1, TEXT, result)
    annotated["predictions"] = [ls_prediction([])]
    tasks = [annotated, cancelled, draft, predicted, {"id": 5, "data": {"text": TEXT}}]
    path = write_json(tmp_path / "export.json", tasks)

    docs, report = import_docs("label-studio", path)
    assert [doc.user_data["orig_id"] for doc in docs] == ["1"] and report.from_predictions == 0
    assert dict(report.skipped) == {
        "predictions of annotated tasks (the annotation is imported)": 1,
        "tasks with only cancelled annotations (skipped by the annotator)": 1,
        "tasks with only an unsubmitted draft (submit it in Label Studio to import it)": 1,
        "tasks with only predictions (import them with --predictions)": 1,
        "tasks without annotations": 1,
    }

    docs, report = import_docs("label-studio", path, predictions=True)
    assert [doc.user_data["orig_id"] for doc in docs] == ["1", "4"] and report.from_predictions == 1
    assert ents(docs[1]) == [(0, 2, "Peop"), (4, 6, "Org")]
    assert rels(docs[1]) == [(4, 6, 0, 2, "E", "Org", "Peop")]
    assert dict(report.skipped) == {
        "predictions of annotated tasks (the annotation is imported)": 1,
        "tasks with only cancelled annotations (skipped by the annotator)": 1,
        "tasks with only an unsubmitted draft (submit it in Label Studio to import it)": 1,
        "further predictions of a task (the first is imported)": 1,
        "tasks without annotations": 1,
    }
    assert ("info", "1 tasks imported from their predictions (no annotation)") in report.messages()


def test_label_studio_prediction_errors_name_the_task(tmp_path):
    bad = {"id": 9, "data": {"text": TEXT}, "predictions": [{"result": [ls_region("a", TEXT, 0, 10, "Peop")]}]}
    bad["predictions"][0]["result"][0]["value"]["end"] = 99
    path = write_json(tmp_path / "export.json", [ls_task(1, TEXT, []), bad])
    with pytest.raises(ConversionError) as info:
        import_docs("label-studio", path, predictions=True)
    assert str(info.value).startswith(f"{path}: record 1 (id 9): field 'predictions[0].result[0].value': 0-99")
    ids_only = {"id": 9, "data": {"text": TEXT}, "annotations": [], "predictions": [31]}
    path = write_json(tmp_path / "export.json", [ids_only])
    with pytest.raises(ConversionError, match=r"record 0 \(id 9\): field 'predictions\[0\]': is 31, a prediction's id"):
        import_docs("label-studio", path, predictions=True)


def test_cli_predictions(tmp_path):
    task = {"id": 4, "data": {"text": TEXT}, "predictions": [ls_prediction([ls_region("a", TEXT, 0, 10, "Peop")])]}
    export = write_json(tmp_path / "export.json", [task])
    res = invoke("label-studio", export, tmp_path / "out.spacy")
    assert res.exit_code == 1
    assert res.stderr == (
        f"error: {export}: nothing to import (1 tasks with only predictions (import them with --predictions))\n"
    )
    res = invoke("label-studio", export, tmp_path / "out.spacy", "--predictions")
    assert res.exit_code == 0, res.output
    assert "1 tasks imported from their predictions (no annotation)" in " ".join(res.stdout.split())
    assert "\x1b[" not in res.stdout  # no colour codes off a terminal
    res = invoke("brat", tmp_path, tmp_path / "out.spacy", "--predictions")
    assert res.exit_code == 2 and res.stderr == "error: --predictions is for label-studio, not brat\n"
