"""`serve` (spacy_spert/apps/serve/): the JSON API and the page over a tiny
overfitted pipeline, under uvicorn on a free localhost port. Valid requests
answer predict's records; bad requests (empty, whitespace only, oversized, not
JSON, wrong field, not UTF-8, ...) get a 4xx with a JSON error and the server
keeps serving; 50 concurrent requests each get their own text's records; the
page escapes every text and draws odd texts (emoji, control characters,
right-to-left, 20,000 tokens) into well-formed HTML."""
import json
import random
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest
import spacy

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="needs the serve extra (fastapi, uvicorn)")

from spacy_spert.io.records import doc_to_record  # noqa: E402
from spacy_spert.apps.serve import Extractor, make_app, parse_extract_body, running_server  # noqa: E402

TEXTS = [
    "Mary Smith works for Acme Corp in Paris .",
    "John Doe lives in London .",
    "Globex , a firm in Berlin , hired Anna Lee .",
    "The weather was nice .",
    "Anna Lee works for Globex in Berlin and John Doe lives in Paris .",
    "Mary Smith lives in London .",
]
MAX_CHARS = 150_000
MAX_TEXTS = 8


@pytest.fixture(scope="module")
def model_dir(small_model_dir) -> Path:
    return small_model_dir


@pytest.fixture(scope="module")
def reference(model_dir):
    """A second copy of the pipeline, for the expected records (the server's
    copy belongs to its worker thread)."""
    return spacy.load(model_dir)


@pytest.fixture(scope="module")
def expected(reference):
    return {text: doc_to_record(reference(text)) for text in TEXTS}


@pytest.fixture(scope="module")
def url(model_dir):
    app = make_app(spacy.load(model_dir), max_chars=MAX_CHARS, max_texts=MAX_TEXTS, batch_size=16)
    with running_server(app) as url:
        yield url


def request(url, path, body=None, content_type="application/json", method=None):
    """(status, headers, body bytes) of one HTTP request; body: bytes, or an object sent as JSON."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode("utf8")
    req = urllib.request.Request(url + path, data=body, method=method or ("POST" if body is not None else "GET"))
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def assert_same_record(got, want):
    """Same entities and relations (offsets, labels, texts), scores within
    float noise (batched and unbatched runs pad differently)."""
    assert got["text"] == want["text"]
    strip = lambda items: [{k: v for k, v in x.items() if k != "score"} for x in items]  # noqa: E731
    assert strip(got["entities"]) == strip(want["entities"])
    assert strip(got["relations"]) == strip(want["relations"])
    for key in ("entities", "relations"):
        for a, b in zip(got[key], want[key]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_pipeline_finds_entities_and_relations(expected):
    """The tests below compare real predictions, not empty lists."""
    assert sum(len(r["entities"]) for r in expected.values()) >= 6
    assert sum(len(r["relations"]) for r in expected.values()) >= 2


def test_extract_one_text_carries_fields(url, expected):
    text = TEXTS[0]
    status, headers, body = request(url, "/extract", {"id": "doc-1", "text": text, "source": "test"})
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    record = json.loads(body)
    assert list(record) == ["id", "text", "source", "entities", "relations"]  # as predict writes a JSONL line
    assert record["id"] == "doc-1" and record["source"] == "test"
    assert_same_record(record, expected[text])


def test_extract_list_of_texts_in_order(url, expected):
    texts = [TEXTS[4], {"text": TEXTS[2], "id": 7}, TEXTS[0]]
    status, _, body = request(url, "/extract", {"texts": texts})
    assert status == 200, body
    records = json.loads(body)
    assert isinstance(records, list) and len(records) == 3
    assert records[1]["id"] == 7
    for record, text in zip(records, [TEXTS[4], TEXTS[2], TEXTS[0]]):
        assert_same_record(record, expected[text])


BAD_REQUESTS = [
    # (body, status, words in the error)
    (b"", 400, "empty"),
    (b"  \n ", 400, "empty"),
    (b'{"text": "Mary', 400, "not JSON"),
    (b"text=Mary", 400, "not JSON"),
    ('{"text": "caf\u00e9 Mary Smith"}'.encode("latin-1"), 400, "not UTF-8"),
    ('{"text": "Mary"}'.encode("utf-16"), 400, "not UTF-8"),
    (b'{"text": "Mary", "score": NaN}', 400, "NaN is not a JSON value"),
    (b'{"text": "Mary", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
    (b'{"text": ""}', 422, "field 'text' is empty"),
    (b'{"text": " \\n\\t "}', 422, "whitespace only"),
    (b'{"txt": "Mary Smith"}', 422, "'txt'"),
    (b'{"text": "a", "texts": ["b"]}', 422, "either"),
    (b'{"text": 42}', 422, "must be a string, got a number"),
    (b'["Mary Smith"]', 422, "got a list"),
    (b'{"texts": "Mary"}', 422, "must be a list"),
    (b'{"texts": []}', 422, "empty list"),
    (b'{"texts": ["Mary", null]}', 422, "texts[1] must be a string, got null"),
    (b'{"texts": ["Mary", {"id": 1}]}', 422, "texts[1] has no field 'text'"),
    (b'{"texts": ["Mary", " "]}', 422, "texts[1] is whitespace only"),
    (b'{"text": "Mary \\ud800 Smith"}', 422, "unpaired surrogate"),
    (json.dumps({"text": "x" * (MAX_CHARS + 1)}).encode(), 413, f"more than this server's limit of {MAX_CHARS}"),
    (json.dumps({"texts": ["Mary"] * (MAX_TEXTS + 1)}).encode(), 413, f"limit of {MAX_TEXTS}"),
]


@pytest.mark.parametrize("body,status,words", BAD_REQUESTS, ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BAD_REQUESTS)])
def test_bad_request_is_4xx_with_reason_and_server_keeps_serving(url, expected, body, status, words):
    got, headers, answer = request(url, "/extract", body)
    assert got == status, answer
    assert headers["Content-Type"].startswith("application/json")
    assert words in json.loads(answer)["detail"]
    ok, _, answer = request(url, "/extract", {"text": TEXTS[1]})
    assert ok == 200
    assert_same_record(json.loads(answer), expected[TEXTS[1]])


def test_body_over_the_limit_is_413_before_it_is_read(url, expected):
    """A Content-Length over the limit is answered at once, without reading the body."""
    import http.client
    from urllib.parse import urlsplit

    limit = MAX_TEXTS * MAX_CHARS * 6 + 64 * 1024
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.putrequest("POST", "/extract")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(limit + 1))
    conn.endheaders()
    conn.send(b'{"text": "')
    response = conn.getresponse()
    assert response.status == 413
    assert "request body has" in json.loads(response.read())["detail"]
    conn.close()
    assert request(url, "/extract", {"text": TEXTS[1]})[0] == 200


def test_wrong_method_and_path(url):
    assert request(url, "/extract")[0] == 405
    assert request(url, "/nothing")[0] == 404


def test_50_concurrent_requests_each_get_their_own_answer(url, expected):
    rng = random.Random(0)
    jobs = [(i, rng.choice(TEXTS)) for i in range(50)]

    def ask(job):
        i, text = job
        return i, text, request(url, "/extract", {"text": text, "n": i})

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, jobs))
    assert len(answers) == 50
    for i, text, (status, _, body) in answers:
        assert status == 200, body
        record = json.loads(body)
        assert record["n"] == i
        assert_same_record(record, expected[text])


def test_extractor_batches_and_answers_each_job(model_dir, reference):
    """Jobs that queue while the worker is busy run as one batch, and each is
    answered with its own records."""
    import threading

    nlp = spacy.load(model_dir)
    entered, gate, calls = threading.Event(), threading.Event(), []

    @spacy.Language.component("serve_test_gate")
    def wait_at_gate(doc):
        if doc.text == "wait":
            entered.set()
            assert gate.wait(60)
        return doc

    nlp.add_pipe("serve_test_gate", first=True)
    pipe = nlp.pipe

    def counting_pipe(texts, **kwargs):
        texts = list(texts)
        calls.append(len(texts))
        return pipe(texts, **kwargs)

    nlp.pipe = counting_pipe
    extractor = Extractor(nlp, batch_size=64)
    try:
        first = extractor.submit([("wait", {})])
        assert entered.wait(60)  # the worker is busy with the first job
        futures = [extractor.submit([(text, {"t": text})]) for text in TEXTS]
        gate.set()
        first.result(timeout=60)
        for text, future in zip(TEXTS, futures):
            [record] = future.result(timeout=60)
            assert record["t"] == text
            assert_same_record(record, doc_to_record(reference(text)))
    finally:
        extractor.close()
    assert calls == [1, len(TEXTS)]


def test_extractor_failure_fails_only_its_request(model_dir):
    nlp = spacy.load(model_dir)

    @spacy.Language.component("fail_on_boom")
    def fail_on_boom(doc):
        if "boom" in doc.text:
            raise RuntimeError("boom")
        return doc

    nlp.add_pipe("fail_on_boom", first=True)
    extractor = Extractor(nlp)
    try:
        bad, good = extractor.submit([("boom", {})]), extractor.submit([(TEXTS[0], {})])
        with pytest.raises(RuntimeError):
            bad.result(timeout=60)
        assert good.result(timeout=60)[0]["text"] == TEXTS[0]
    finally:
        extractor.close()


def test_parse_extract_body():
    assert parse_extract_body(b'{"text": "a b", "id": 1}') == (True, [("a b", {"text": "a b", "id": 1})])
    got = parse_extract_body(b'{"texts": ["a", {"text": "b", "k": 2}]}')
    assert got == (False, [("a", {}), ("b", {"text": "b", "k": 2})])


def test_health_and_openapi(url):
    status, _, body = request(url, "/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["pipeline"] == ["transformer", "spert"]
    assert health["spans_key"] == "sc"
    assert health["limits"] == {"max_chars": MAX_CHARS, "max_texts": MAX_TEXTS}
    status, _, body = request(url, "/openapi.json")
    assert status == 200
    spec = json.loads(body)
    extract = spec["paths"]["/extract"]["post"]
    assert set(extract["responses"]) >= {"200", "400", "413", "422"}
    schema = extract["requestBody"]["content"]["application/json"]["schema"]
    assert [option["required"] for option in schema["oneOf"]] == [["text"], ["texts"]]
    assert "Record" in spec["components"]["schemas"]
    assert "/health" in spec["paths"]


class _Checker(HTMLParser):
    """Counts elements, checks that every non-void element is closed in order,
    and collects scripts and the text of tags."""

    VOID = {"meta", "br", "input", "img", "link", "rect", "path", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.counts, self.errors, self.texts = [], {}, [], {}

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack:
            self.texts.setdefault(self.stack[-1], []).append(data)


def check_page(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert checker.stack == [], checker.stack
    assert "script" not in checker.counts
    return checker


def submit(url, text, encoding="utf8"):
    body = urlencode({"text": text}, encoding=encoding).encode("ascii")
    return request(url, "/", body, content_type="application/x-www-form-urlencoded")


def test_page_form(url):
    status, headers, body = request(url, "/")
    assert status == 200
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in headers["Content-Security-Policy"]
    checker = check_page(body.decode("utf8"))
    assert checker.counts["textarea"] == 1 and checker.counts["form"] == 1


def test_page_shows_rendering_and_table(url, expected):
    text = TEXTS[0]
    status, headers, body = submit(url, text)
    assert status == 200
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = body.decode("utf8")
    checker = check_page(page)
    want = expected[text]
    assert page.count('class="spert-entity"') == len(want["entities"])
    assert page.count('class="spert-arc"') == len(want["relations"])
    assert checker.counts["table"] == 2
    assert checker.counts["tr"] == 2 + len(want["entities"]) + len(want["relations"])  # with header rows
    assert "".join(checker.texts["textarea"]) == text


@pytest.mark.parametrize("attack", [
    "<script>alert(1)</script> Mary Smith works for Acme Corp .",
    "Mary Smith </textarea><script>alert(1)</script>",
    "John Doe lives in \"London\" ' & <img src=x onerror=alert(1)> </svg></figure></div>",
])
def test_page_escapes_text(url, attack):
    status, _, body = submit(url, attack)
    assert status == 200
    page = body.decode("utf8")
    checker = check_page(page)  # no <script>, no <img>, every element closed in order
    assert "img" not in checker.counts
    assert "".join(checker.texts["textarea"]) == attack
    assert "&lt;script&gt;" in page or "&lt;img" in page


@pytest.mark.parametrize("name,text", [
    ("emoji", "Mary Smith 👩🏽‍🔬 works for Acme Corp 🏢 in Paris 🇫🇷 ."),
    ("control characters", "Mary\x00 Smith\x07 works\x1b[31m for \x7fAcme\x85 Corp \x0b in Paris ."),
    ("right to left", "מרי סמית עובדת ב Acme Corp בפריז . Mary Smith works for Acme Corp in Paris ."),
    ("arabic", "ماري سميث تعمل في Acme Corp في باريس ."),
    ("long", " ".join(random.Random(0).choice(TEXTS[0].split() + ["and", "the"]) for _ in range(20_000))),
])
def test_page_renders_odd_texts(url, name, text):
    status, _, body = submit(url, text)
    assert status == 200, body[:300]
    page = body.decode("utf8")  # the page is valid UTF-8
    check_page(page)
    assert not any(ch in page for ch in "\x00\x07\x1b\x7f\x85"), "control characters reach the page"
    assert page.count('class="spert-figure"') >= 1


@pytest.mark.parametrize("text,status,words", [
    ("", 422, "empty"),
    ("   \n  ", 422, "whitespace only"),
    ("x" * (MAX_CHARS + 1), 413, f"has {MAX_CHARS + 1} characters, more than"),
])
def test_page_bad_text_is_4xx_page(url, text, status, words):
    got, headers, body = submit(url, text)
    assert got == status
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode("utf8")
    check_page(page)
    assert words in page


def test_page_not_utf8_form(url):
    got, _, body = request(url, "/", b"text=caf%E9", content_type="application/x-www-form-urlencoded")
    assert got == 400
    assert "not UTF-8" in body.decode("utf8")


def test_make_app_without_fastapi_says_what_to_install(monkeypatch, reference):
    import builtins

    import spacy_spert.apps.serve as serve_module

    real_import = builtins.__import__

    def no_fastapi(name, *args, **kwargs):
        if name == "fastapi" or name.startswith("fastapi."):
            raise ImportError("No module named 'fastapi'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fastapi)
    with pytest.raises(ImportError, match=r"pip install 'spacy-spert\[serve\]'"):
        serve_module.make_app(reference)
