"""``serve`` as a Label Studio ML backend (spacy_spert/apps/serve/label_studio.py), over the tiny overfitted
pipeline with FastAPI's TestClient, in the protocol of Label Studio 1.23 (/work/shared/notes/label-studio.md):
/health, /setup (the labeling config: model version, labels mapped, mismatches in the answer and the log),
/predict (one prediction per task, in order, exactly ``predict --format label-studio``'s), /webhook; bad
bodies are 4xx with a message and the server keeps serving; /extract's limits hold."""

import json
import logging

import pytest
import spacy

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient

from spacy_spert.apps.predict import predict
from spacy_spert.apps.serve import make_app
from spacy_spert.apps.serve.label_studio import ConfigCache
from spacy_spert.io.label_studio_tasks import parse_label_config

TEXTS = [
    "Mary Smith works for Acme Corp in Paris .",
    "John Doe lives in London .",
    "Globex , a firm in Berlin , hired Anna Lee .",
]
MAX_CHARS = 200
MAX_TEXTS = 4
CONFIG = """<View>
  <Relations><Relation value="Work_For"/><Relation value="Live_In"/><Relation value="OrgBased_In"/></Relations>
  <Labels name="label" toName="text"><Label value="Peop"/><Label value="Org"/><Label value="Loc"/></Labels>
  <Text name="text" value="$text"/>
</View>"""
# Other names, one label spelt otherwise, one the model lacks, one missing; no OrgBased_In.
OTHER_CONFIG = """<View>
  <Labels name="ner" toName="doc"><Label value="PEOP"/><Label value="Org"/><Label value="Misc"/></Labels>
  <Relations><Relation value="Work For"/><Relation value="Live_In"/></Relations>
  <Text name="doc" value="$sentence"/>
</View>"""


@pytest.fixture(scope="module")
def client(small_model_dir):
    app = make_app(spacy.load(small_model_dir), max_chars=MAX_CHARS, max_texts=MAX_TEXTS, model_version="v-test")
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def predicted(small_model_dir, tmp_path_factory):
    """``predict --format label-studio``'s tasks for TEXTS (the file Label Studio would import)."""
    folder = tmp_path_factory.mktemp("predict")
    (folder / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), "utf8")
    predict(small_model_dir, folder / "in.jsonl", folder / "tasks.json", output_format="label-studio")
    return json.loads((folder / "tasks.json").read_text("utf8"))


def ls_task(task_id, text, key="text"):
    """A task as Label Studio sends it to /predict (with an annotation, which the backend ignores)."""
    return {
        "id": task_id,
        "data": {key: text},
        "annotations": [{"id": 1, "result": [], "was_cancelled": False}],
        "predictions": [],
        "project": 3,
    }


def predict_body(tasks, label_config=CONFIG, project="3.1700000000"):
    body = {"tasks": tasks, "project": project, "params": {"context": None}}
    if label_config is not None:
        body["label_config"] = label_config
    return body


def without_scores(prediction):
    return [{k: v for k, v in item.items() if k != "score"} for item in prediction["result"]]


def assert_same_prediction(got, want):
    assert without_scores(got) == without_scores(want)
    assert [item["score"] for item in got["result"]] == pytest.approx(
        [item["score"] for item in want["result"]], abs=1e-4
    )
    assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["model_class"] == "spacy-spert"
    assert health["model_version"] == "v-test"


def test_setup_with_matching_labels(client, caplog):
    body = {
        "project": "11.1700000000",
        "schema": CONFIG,
        "hostname": "http://localhost:8080",
        "access_token": "secret-token-4711",
    }
    with caplog.at_level(logging.INFO, logger="spacy_spert.serve"):
        response = client.post("/setup", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == "v-test" and answer["warnings"] == []
    assert answer["labels"]["entities"]["mapped"] == {"Peop": "Peop", "Org": "Org", "Loc": "Loc"}
    assert answer["labels"]["relations"]["model_only"] == []
    assert any("11.1700000000" in r.getMessage() and "the model's labels" in r.getMessage() for r in caplog.records)
    assert not any("secret-token-4711" in r.getMessage() for r in caplog.records)  # the token is never logged


def test_setup_with_other_labels_reports_them(client, caplog):
    body = {"project": "12.1700000000", "schema": OTHER_CONFIG}
    with caplog.at_level(logging.INFO, logger="spacy_spert.serve"):
        answer = client.post("/setup", json=body).json()
    warnings = answer["warnings"]
    assert "entity labels mapped by another spelling: Peop -> PEOP" in warnings
    assert (
        'model entity labels not in the labeling config\'s <Labels name="ner">, left out of predictions: Loc'
        in warnings
    )
    assert "labeling config entity labels the model never predicts: Misc" in warnings
    assert (
        "model relation labels not in the labeling config's <Relations>, left out of predictions: OrgBased_In"
        in warnings
    )
    assert answer["labels"]["relations"]["mapped"] == {"Work_For": "Work For", "Live_In": "Live_In"}
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == len(warnings) and all(m.startswith("Label Studio project 12.1700000000: ") for m in logged)
    assert any("Misc" in m for m in logged) and any("Loc" in m for m in logged)
    # Label Studio calls /setup on every listing: the same config is logged once
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spacy_spert.serve"):
        assert client.post("/setup", json=body).json()["warnings"] == warnings
    assert caplog.records == []


def test_predict_three_tasks_in_order_as_predict(client, predicted):
    tasks = [ls_task(30 + k, text) for k, text in enumerate(TEXTS)]
    response = client.post("/predict", json=predict_body(tasks))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for got, task in zip(results, predicted):
        want = task["predictions"][0]
        assert got["model_version"] == "v-test"
        assert_same_prediction(got, want)
    regions = [item for result in results for item in result["result"] if item["type"] == "labels"]
    relations = [item for result in results for item in result["result"] if item["type"] == "relation"]
    assert len(regions) >= 6 and len(relations) >= 2  # real predictions, not empty lists
    # reversed order, reversed answers; without a label config: Label Studio's defaults, the same here
    results = client.post("/predict", json=predict_body(tasks[::-1], label_config=None, project=None)).json()
    for got, task in zip(results["results"], predicted[::-1]):
        assert_same_prediction(got, task["predictions"][0])


def test_predict_in_the_projects_names_and_labels(client, predicted):
    assert client.post("/setup", json={"project": "12.1700000000", "schema": OTHER_CONFIG}).status_code == 200
    tasks = [ls_task(1, text, key="sentence") for text in TEXTS]
    # no label_config in the request: the project's, from /setup
    results = client.post("/predict", json=predict_body(tasks, label_config=None, project="12.1700000000")).json()
    config = parse_label_config(OTHER_CONFIG)
    for got, task in zip(results["results"], predicted):
        regions = {item["id"]: item for item in got["result"] if item["type"] == "labels"}
        assert all(r["from_name"] == "ner" and r["to_name"] == "doc" for r in regions.values())
        assert {r["value"]["labels"][0] for r in regions.values()} <= {"PEOP", "Org"}
        for item in got["result"]:
            if item["type"] == "relation":
                assert item["from_id"] in regions and item["to_id"] in regions
                assert item["labels"][0] in config.relation_labels
        want = [
            i for i in task["predictions"][0]["result"] if i["type"] == "labels" and i["value"]["labels"] != ["Loc"]
        ]
        assert [r["value"]["start"] for r in regions.values()] == [i["value"]["start"] for i in want]
    # the request's label_config wins over the project's
    tasks = [ls_task(1, TEXTS[0])]
    got = client.post("/predict", json=predict_body(tasks, project="12.1700000000")).json()["results"][0]
    assert_same_prediction(got, predicted[0]["predictions"][0])


def test_predict_empty_text_gets_an_empty_result(client, predicted):
    tasks = [ls_task(1, "  "), ls_task(2, TEXTS[1])]
    results = client.post("/predict", json=predict_body(tasks)).json()["results"]
    assert results[0] == {"model_version": "v-test", "score": 1.0, "result": []}
    assert_same_prediction(results[1], predicted[1]["predictions"][0])


def deep(n):
    return "[" * n + "]" * n


BAD_PREDICT = [
    # (body, status, words in the error)
    (b"", 400, "empty"),
    (b'{"tasks": [', 400, "not JSON"),
    (b'{"tasks": [], "x": NaN}', 400, "NaN is not a JSON value"),
    (b'{"tasks": ' + deep(200).encode() + b"}", 400, "nested too deeply"),
    (b'["tasks"]', 422, "expected a JSON object"),
    (b'{"task": []}', 422, "expected a field 'tasks'"),
    (b'{"tasks": {}}', 422, "field 'tasks' must be a list"),
    (b'{"tasks": []}', 422, "field 'tasks' is an empty list"),
    (b'{"tasks": ["text"]}', 422, "tasks[0] must be a task object"),
    (b'{"tasks": [{"id": 7}]}', 422, "tasks[0] (id 7): field 'data' must be an object"),
    (
        b'{"tasks": [{"id": 1, "data": {"text": "Bo ."}}, {"id": 7, "data": {"sentence": "Bo ."}}]}',
        422,
        "tasks[1] (id 7): no field 'data.text' (the labeling config's <Text> reads $text; the task's data has: "
        "'sentence')",
    ),
    (b'{"tasks": [{"id": 7, "data": {"text": 5}}]}', 422, "tasks[0] (id 7): field 'data.text' must be a string"),
    (b'{"tasks": [{"data": {"text": "a\\ud800"}}]}', 422, "unpaired surrogate"),
    (b'{"tasks": [{"data": {"text": "a"}}], "n": 1e999}', 422, "out of range"),
    (b'{"tasks": [{"data": {"text": "a"}}], "label_config": "<View>"}', 422, "field 'label_config': the labeling"),
    (b'{"tasks": [{"data": {"text": "a"}}], "label_config": 3}', 422, "field 'label_config' must be a string"),
    (b'{"tasks": [{"data": {"text": "a"}}], "project": [1]}', 422, "field 'project' must be a string"),
    (
        json.dumps({"tasks": [{"data": {"text": "Bo ."}}] * (MAX_TEXTS + 1)}).encode(),
        413,
        f"field 'tasks' has {MAX_TEXTS + 1} tasks, more than this server's limit of {MAX_TEXTS} (serve --max-texts)",
    ),
    (
        json.dumps({"tasks": [{"id": 2, "data": {"text": "x" * (MAX_CHARS + 1)}}]}).encode(),
        413,
        f"tasks[0] (id 2): field 'data.text' has {MAX_CHARS + 1} characters, more than this server's limit",
    ),
]


@pytest.mark.parametrize("body,status,message", BAD_PREDICT)
def test_bad_predict_bodies(client, body, status, message):
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert client.get("/health").status_code == 200  # still serving


def test_predict_body_limit_is_a_413(client):
    # a body over LS_BODY_FACTOR times /extract's limit, refused by its length before it is read
    body = b'{"tasks": [{"data": {"text": "' + b"a" * (4 * (MAX_TEXTS * MAX_CHARS * 6 + 64 * 1024) + 10) + b'"}}]}'
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "more than this server's limit" in response.json()["detail"]
    # /extract's limits are the same as before
    response = client.post("/extract", json={"texts": ["Bo ."] * (MAX_TEXTS + 1)})
    assert response.status_code == 413 and f"limit of {MAX_TEXTS}" in response.json()["detail"]


BAD_SETUP = [
    (b"{}", 422, "no field 'schema'"),
    (b'{"schema": 1}', 422, "field 'schema' must be a string"),
    (b'{"schema": "<View>"}', 422, "field 'schema': the labeling config is not XML"),
    (
        json.dumps({"schema": '<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa">]><View>&a;</View>'}).encode(),
        422,
        "field 'schema': the labeling config has a DTD",
    ),
    (
        json.dumps({"schema": '<View><Choices name="c" toName="t"/><Text name="t" value="$t"/></View>'}).encode(),
        422,
        "no <Labels name=... toName=...> on a <Text",
    ),
    (b"[]", 422, "expected a JSON object"),
    (b"{", 400, "not JSON"),
]


@pytest.mark.parametrize("body,status,message", BAD_SETUP)
def test_bad_setup_bodies(client, caplog, body, status, message):
    with caplog.at_level(logging.WARNING, logger="spacy_spert.serve"):
        response = client.post("/setup", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert any(message in r.getMessage() for r in caplog.records)  # Label Studio shows only the status
    assert client.get("/health").status_code == 200


def test_webhook(client, caplog):
    event = {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 1, "result": []},
        "task": {"id": 2},
        "project": {"id": 3},
    }
    response = client.post("/webhook", json=event)
    assert response.status_code == 200 and response.json() == {"status": "ok", "action": "ANNOTATION_CREATED"}
    with caplog.at_level(logging.INFO, logger="spacy_spert.serve"):
        answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3}}).json()
    assert answer["training"] is False and "does not train" in answer["detail"]
    assert any("project 3 asked to train" in r.getMessage() for r in caplog.records)
    response = client.post("/webhook", json={"event": "x"})
    assert response.status_code == 422 and "field 'action'" in response.json()["detail"]


def test_log_lines_cannot_be_forged(client, caplog):
    config = CONFIG.replace('value="Misc"', "").replace('<Label value="Loc"/>', '<Label value="X&#10;INFO fake"/>')
    with caplog.at_level(logging.INFO, logger="spacy_spert.serve"):
        client.post("/setup", json={"project": "13.1\nfake", "schema": config})
    messages = [r.getMessage() for r in caplog.records]
    assert messages and all("\n" not in m for m in messages)
    assert any("X\\u000aINFO fake" in m for m in messages)


def test_config_cache_is_bounded():
    cache = ConfigCache(limit=2)
    for k in range(5):
        cache.set_project(str(k), cache.parse(CONFIG.replace("Misc", f"M{k}") + f"<!-- {k} -->"))
    assert list(cache.projects) == ["3", "4"] and len(cache.parsed) == 2
    assert cache.set_project("4", cache.projects["4"]) is False
