"""`serve` as the ML backend of the real Label Studio (1.23.2, in its own
virtual environment: `make labelstudio`; run with `make test-labelstudio`).

Label Studio runs offline on 127.0.0.1 with a temporary data folder
(tests/label_studio.py has the settings), `serve` runs the tiny overfitted
pipeline on another localhost port, and everything goes through Label
Studio's REST API as a user's clicks would: create a project with a labeling
config of entities and relations, import tasks (emoji, accents, combining
marks, right-to-left scripts, letters outside the Basic Multilingual Plane),
connect `serve` as the project's model, ask it for predictions, and read
back what Label Studio stored. Label Studio stores predictions without
checking them, so this test is what checks them: one per task, region ids
unique, every relation between regions of its task, labels of the config,
offsets (code points) that match the text, and the same as `predict --format
label-studio` gives for the same texts. Then the predictions are accepted as
annotations, exported as JSON and imported with `import label-studio`: the
corpus has the model's entities and relations.

test_the_checker_finds_what_label_studio_would_store_unchecked runs without
Label Studio: the checks catch each kind of bad prediction.

The Label Studio tests are marked `labelstudio` (and `slow`: Label Studio takes 30 s to 2 min to start);
skipped, with the reason, where Label Studio is not installed."""

import json
import subprocess
import sys
import time

import label_studio as ls
import pytest

# Skips the tests that run Label Studio where it is missing; the checker's own test runs everywhere.
without_label_studio = pytest.mark.skipif(ls.missing() is not None, reason=str(ls.missing()))

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")

from spacy.tokens import DocBin  # noqa: E402

from spacy_spert.io.records import doc_to_record  # noqa: E402

ENTITIES = ["Peop", "Org", "Loc"]
RELATIONS = ["Work_For", "OrgBased_In", "Live_In"]
TEXTS = [
    "Mary Smith works for Acme Corp in Paris .",
    "John Doe lives in London .",
    "Globex , a firm in Berlin , hired Anna Lee .",
    "The weather was nice .",
    "Anna Lee works for Globex in Berlin and John Doe lives in Paris .",
    # emoji (astral code points, a ZWJ sequence, a flag) before and between entities
    "👩🏽‍🔬 Mary Smith 👩🏽‍🔬 works for Acme Corp 🏢 in Paris 🇫🇷 .",
    "🎉🎉🎉 John Doe lives in London 🇬🇧 .",
    # letters outside the Basic Multilingual Plane
    "𝔐𝔞𝔯𝔶 met 𝒥ℴ𝒽𝓃 . Anna Lee works for Globex in Berlin .",
    # accents: precomposed, and combining marks (two code points per letter)
    "Zoë Müller works for Acme Corp in Paris . Mary Smith lives in London .",
    "Jose\u0301 Nu\u0301n\u0303ez met Mary Smith . Mary Smith works for Acme Corp in Paris .",
    # right to left (Hebrew, Arabic) around left-to-right entities
    "מרי סמית עובדת ב Acme Corp בפריז . John Doe lives in London .",
    "ماري سميث تعمل في باريس . Mary Smith works for Acme Corp in Paris .",
    # newlines and tabs
    "John Doe lives in London .\n\n\tMary Smith works for Acme Corp in Paris .",
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    started = time.monotonic()
    with ls.running_label_studio(tmp_path_factory.mktemp("label-studio")) as app:
        print(f"\nLabel Studio {app.url} answered after {time.monotonic() - started:.1f} s")
        yield app


@pytest.fixture(scope="module")
def backend(small_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with ls.running_serve(small_model_dir, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def expected(small_model_dir, tmp_path_factory):
    """The predictions of `predict --format label-studio` for TEXTS, by text."""
    folder = tmp_path_factory.mktemp("predict")
    (folder / "texts.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS), encoding="utf8")
    (folder / "config.xml").write_text(ls.label_config(ENTITIES, RELATIONS), encoding="utf8")
    out = folder / "tasks.json"
    command = [sys.executable, "-m", "spacy_spert", "predict", str(small_model_dir), str(folder / "texts.jsonl")]
    options = ["--format", "label-studio", "--label-config", str(folder / "config.xml")]
    run = subprocess.run([*command, str(out), *options], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    raw = out.read_text("utf8")
    try:
        tasks = json.loads(raw)
    except json.JSONDecodeError:  # JSON lines
        tasks = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert [task["data"]["text"] for task in tasks] == TEXTS
    return {task["data"]["text"]: task["predictions"] for task in tasks}


@pytest.fixture(scope="module")
def project(app, backend):
    """A project with the tasks imported, `serve` connected and predictions
    retrieved: (project id, backend, {task id: text}, {task id: [predictions]},
    seconds for the predictions)."""
    config = ls.label_config(ENTITIES, RELATIONS)
    project = app.api("POST", "/api/projects/", {"title": "spert pre-annotation", "label_config": config})
    imported = app.api("POST", f"/api/projects/{project['id']}/import", [{"data": {"text": t}} for t in TEXTS])
    assert imported["task_count"] == len(TEXTS), imported
    tasks = app.api("GET", f"/api/tasks/?project={project['id']}&page_size=1000")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    texts = {task["id"]: task["data"]["text"] for task in tasks}
    assert sorted(texts.values()) == sorted(TEXTS), "Label Studio changed the texts"
    # Connecting runs GET /health and POST /setup on the backend.
    ml = app.api(
        "POST", "/api/ml/", {"url": backend, "project": project["id"], "title": "spert", "is_interactive": False}
    )
    started = time.monotonic()
    app.api(
        "POST",
        f"/api/dm/actions?id=retrieve_tasks_predictions&project={project['id']}",
        {"selectedItems": {"all": False, "included": list(texts)}},
    )
    predictions = {task: app.api("GET", f"/api/predictions/?task={task}") for task in texts}
    seconds = time.monotonic() - started
    ml = app.api("GET", f"/api/ml/{ml['id']}")
    return project["id"], ml, texts, predictions, seconds


@pytest.mark.labelstudio
@pytest.mark.slow
@without_label_studio
def test_every_stored_prediction_is_valid_and_is_predicts(project, expected):
    _, ml, texts, predictions, seconds = project
    assert ml["state"] == "CO", f"the backend is not connected: {ml}"  # CO: connected
    n_regions = n_relations = 0
    problems = []
    for task, text in texts.items():
        stored = predictions[task]
        assert len(stored) == 1, f"task {task} ({text!r}) has {len(stored)} predictions: {stored}"
        prediction = stored[0]
        assert prediction["model_version"] == ml["model_version"] != ""
        result = prediction["result"]
        problems += [f"task {task} ({text!r}): {p}" for p in ls.check_result(text, result, ENTITIES, RELATIONS)]
        # What predict writes for the same text, but for the region ids.
        assert len(expected[text]) == 1
        assert ls.normalized(result) == ls.normalized(expected[text][0]["result"]), text
        # (scores of another process and batch: equal up to float rounding)
        assert ls.scores(result) == pytest.approx(ls.scores(expected[text][0]["result"]), abs=1e-4), text
        assert prediction["score"] == pytest.approx(expected[text][0]["score"], abs=1e-4)
        n_regions += sum(item["type"] == "labels" for item in result)
        n_relations += sum(item["type"] == "relation" for item in result)
    assert not problems, "\n".join(problems)
    # The checks above must have had something to check, offsets after astral
    # characters and combining marks included.
    assert n_regions >= len(TEXTS) and n_relations >= len(TEXTS) // 2, (n_regions, n_relations)
    for marker in ("🏢", "𝔐", "\u0301", "מ"):
        after = [
            item
            for task, text in texts.items()
            if marker in text
            for item in predictions[task][0]["result"]
            if item["type"] == "labels" and item["value"]["start"] > text.index(marker)
        ]
        assert after, f"no region after {marker!r} to check the offsets with"
    print(
        f"\nLabel Studio stored {len(texts)} tasks' predictions, {n_regions} regions, {n_relations} relations "
        f"(retrieved and read back in {seconds:.1f} s), all valid and equal to predict's"
    )


@pytest.mark.labelstudio
@pytest.mark.slow
@without_label_studio
def test_accepted_predictions_export_and_import_as_the_models(app, project, tmp_path):
    """Accept each prediction as the task's annotation (the annotator's
    submit), export the project as JSON and import it: the corpus holds the
    model's entities and relations."""
    project_id, _, texts, predictions, _ = project
    for task in texts:
        result = predictions[task][0]["result"]
        app.api("POST", f"/api/tasks/{task}/annotations/", {"result": result, "was_cancelled": False})
    export = app.api("GET", f"/api/projects/{project_id}/export?exportType=JSON")
    assert len(export) == len(texts)
    (tmp_path / "export.json").write_text(json.dumps(export, ensure_ascii=False), encoding="utf8")
    run = subprocess.run(
        [sys.executable, "-m", "spacy_spert", "import", "label-studio", "export.json", "train.spacy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    import spacy

    docs = list(DocBin().from_disk(tmp_path / "train.spacy").get_docs(spacy.blank("en").vocab))
    by_text = {text: task for task, text in texts.items()}
    assert sorted(doc.text for doc in docs) == sorted(texts.values())
    for doc in docs:
        record = doc_to_record(doc)
        got_entities = sorted((e["start"], e["end"], e["label"]) for e in record["entities"])
        got_relations = sorted(
            (tuple(record["entities"][r[k]][f] for k in ("head", "tail") for f in ("start", "end")), r["label"])
            for r in record["relations"]
        )
        result = predictions[by_text[doc.text]][0]["result"]
        regions = {item["id"]: item["value"] for item in result if item["type"] == "labels"}
        want_entities = sorted((v["start"], v["end"], v["labels"][0]) for v in regions.values())
        want_relations = sorted(
            (
                (regions[i["from_id"]]["start"], regions[i["from_id"]]["end"])
                + (regions[i["to_id"]]["start"], regions[i["to_id"]]["end"]),
                i["labels"][0],
            )
            for i in result
            if i["type"] == "relation"
        )
        assert (got_entities, got_relations) == (want_entities, want_relations), doc.text


def test_the_checker_finds_what_label_studio_would_store_unchecked():
    """check_result must catch each kind of bad prediction that Label Studio
    stores with a 200 (so that the test above can fail)."""
    text = "🎉 Anna Lee works for Globex ."
    good = [
        {"id": "e0", "from_name": "label", "to_name": "text", "type": "labels", "score": 0.9,
         "value": {"start": 2, "end": 10, "text": "Anna Lee", "labels": ["Peop"]}},
        {"id": "e1", "from_name": "label", "to_name": "text", "type": "labels", "score": 0.8,
         "value": {"start": 21, "end": 27, "text": "Globex", "labels": ["Org"]}},
        {"type": "relation", "from_id": "e0", "to_id": "e1", "direction": "right", "labels": ["Work_For"]},
    ]  # fmt: skip
    assert ls.check_result(text, good, ENTITIES, RELATIONS) == []

    def broken(n, path, value):
        result = json.loads(json.dumps(good))
        *keys, last = path
        target = result[n]
        for key in keys:
            target = target[key]
        target[last] = value
        return ls.check_result(text, result, ENTITIES, RELATIONS)

    assert broken(1, ["id"], "e0")  # duplicate region ids
    assert broken(2, ["to_id"], "e7")  # a relation to no region of the task
    assert broken(0, ["value", "labels"], ["Person"])  # a label not in the config
    assert broken(2, ["labels"], ["Born_In"])
    assert broken(2, ["labels"], [])  # an unlabelled arrow
    assert broken(2, ["direction"], None)
    assert broken(0, ["from_name"], "ner")
    # UTF-16 offsets (the emoji as two units), as a browser would count them
    assert broken(0, ["value", "start"], 3) and broken(1, ["value", "end"], 28)
    assert broken(1, ["value", "end"], 99)
    assert broken(0, ["score"], 1.5)
    assert ls.normalized(good) != ls.normalized(good[:2])
    assert ls.scores(good) != ls.scores([dict(good[0], score=0.5), *good[1:]])
