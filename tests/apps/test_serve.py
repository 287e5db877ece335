"""`serve` (spacy_spert/apps/serve/): the JSON API and the page over a tiny
overfitted pipeline, under uvicorn on a free localhost port. Valid requests
answer predict's records; bad requests (empty, whitespace only, oversized, not
JSON, wrong field, not UTF-8, ...) get a 4xx with a JSON error and the server
keeps serving; 50 concurrent requests each get their own text's records; the
page escapes every text and draws odd texts (emoji, control characters,
right-to-left, 20,000 tokens) into well-formed HTML.

One client must not stall or slow the others: idle connections and heads or
bodies that stop half-way are closed after the read timeouts (raw sockets);
the work of a client that disconnects is dropped; a small request waits for
one batch of a large one, not all of it; numbers out of range, unpaired
surrogates and deep nesting in any field are 4xx, not 500; forms with many
fields work; no page loads anything from another server. These run over a
stub pipeline (a blank one with a component the test controls), so that the
waits are deterministic."""

import http.client
import json
import random
import re
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import spacy

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="needs the serve extra (fastapi, uvicorn)")

from spacy_spert.apps.serve import Extractor, make_app, parse_extract_body, running_server
from spacy_spert.io.records import doc_to_record

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


@pytest.mark.parametrize(
    "body,status,words", BAD_REQUESTS, ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BAD_REQUESTS)]
)
def test_bad_request_is_4xx_with_reason_and_server_keeps_serving(url, expected, body, status, words):
    assert_4xx_then_serves(url, expected, body, status, words)


def assert_4xx_then_serves(url, expected, body: bytes, status: int, words: str) -> None:
    """POST /extract ``body``: answered ``status`` with ``words`` in its JSON
    detail, and the next request is served as before."""
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

    VOID = frozenset({"meta", "br", "input", "img", "link", "rect", "path", "hr"})

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
    assert (
        "script-src" not in headers["Content-Security-Policy"]
        and "default-src 'none'" in headers["Content-Security-Policy"]
    )
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


@pytest.mark.parametrize(
    "attack",
    [
        "<script>alert(1)</script> Mary Smith works for Acme Corp .",
        "Mary Smith </textarea><script>alert(1)</script>",
        'John Doe lives in "London" \' & <img src=x onerror=alert(1)> </svg></figure></div>',
    ],
)
def test_page_escapes_text(url, attack):
    status, _, body = submit(url, attack)
    assert status == 200
    page = body.decode("utf8")
    checker = check_page(page)  # no <script>, no <img>, every element closed in order
    assert "img" not in checker.counts
    assert "".join(checker.texts["textarea"]) == attack
    assert "&lt;script&gt;" in page or "&lt;img" in page


@pytest.mark.parametrize(
    "name,text",
    [
        ("emoji", "Mary Smith 👩🏽‍🔬 works for Acme Corp 🏢 in Paris 🇫🇷 ."),
        ("control characters", "Mary\x00 Smith\x07 works\x1b[31m for \x7fAcme\x85 Corp \x0b in Paris ."),
        ("right to left", "מרי סמית עובדת ב Acme Corp בפריז . Mary Smith works for Acme Corp in Paris ."),
        ("arabic", "ماري سميث تعمل في Acme Corp في باريس ."),
        ("long", " ".join(random.Random(0).choice(TEXTS[0].split() + ["and", "the"]) for _ in range(20_000))),
    ],
)
def test_page_renders_odd_texts(url, name, text):
    status, _, body = submit(url, text)
    assert status == 200, body[:300]
    page = body.decode("utf8")  # the page is valid UTF-8
    check_page(page)
    assert not any(ch in page for ch in "\x00\x07\x1b\x7f\x85"), "control characters reach the page"
    assert page.count('class="spert-figure"') >= 1


@pytest.mark.parametrize(
    "text,status,words",
    [
        ("", 422, "empty"),
        ("   \n  ", 422, "whitespace only"),
        ("x" * (MAX_CHARS + 1), 413, f"has {MAX_CHARS + 1} characters, more than"),
    ],
)
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


# --- One client must not stall or slow the server for the others -------------------------------------------------

BODY_PROBLEMS = [
    # (body, status, words in the error): JSON that parses but that no record can carry back
    (b'{"text": "Mary", "n": ' + b"1" * 5000 + b"}", 422, "an integer of 5000 digits, more than the limit of 4300"),
    (b'{"texts": [{"text": "Mary", "n": -' + b"9" * 4301 + b"}]}", 422, "an integer of 4301 digits"),
    (b'{"text": "Mary", "x": 1e999}', 422, 'the number "1e999" is out of range'),
    (b'{"texts": [{"text": "Mary", "x": [-1.5e400]}]}', 422, 'the number "-1.5e400" is out of range'),
    (b'{"text": "Mary", "x": Infinity}', 400, "Infinity is not a JSON value"),
    (b'{"text": "Mary", "x": -Infinity}', 400, "-Infinity is not a JSON value"),
    (
        b'{"text": "Mary", "id": "a\\ud800"}',
        422,
        "id: a string with an unpaired surrogate U+D800 (at character 1)",
    ),
    (
        b'{"texts": [{"text": "Mary", "meta": {"k": ["\\udfff"]}}]}',
        422,
        "texts[0].meta.k[0]: a string with an unpaired surrogate U+DFFF",
    ),
    (
        b'{"text": "Mary", "\\ud800": 1}',
        422,
        "a field name in the top level: a string with an unpaired surrogate U+D800",
    ),
    (b'{"text": "Mary", "x": ' + b"[" * 150 + b"]" * 150 + b"}", 400, "nested too deeply: more than 100 levels"),
]


@pytest.mark.parametrize(
    "body,status,words", BODY_PROBLEMS, ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BODY_PROBLEMS)]
)
def test_body_problem_is_4xx_naming_it(url, expected, body, status, words):
    """Numbers out of range, unpaired surrogates and deep nesting in any field
    were answered 500 (the record could not be written back)."""
    assert_4xx_then_serves(url, expected, body, status, words)


def test_numbers_within_range_are_carried_through(url):
    big, huge = int("7" * 4300), 1.7e308
    body = (
        b'{"text": "Mary Smith", "n": ' + str(big).encode() + b', "x": 1.7e308, "deep": ' + b"[" * 90 + b"]" * 90 + b"}"
    )
    status, _, answer = request(url, "/extract", body)
    assert status == 200, answer
    record = json.loads(answer)
    assert record["n"] == big and record["x"] == huge


def test_form_with_many_fields(url):
    """The form was answered "not UTF-8" beyond 16 fields; now up to
    max_form_fields (100) work and more are a 413 that says so."""
    fields = [("text", TEXTS[0])] + [(f"f{i}", "caf\u00e9") for i in range(30)]
    status, _, body = request(
        url, "/", urlencode(fields).encode("ascii"), content_type="application/x-www-form-urlencoded"
    )
    assert status == 200, body[:300]
    assert 'class="spert-entity"' in body.decode("utf8")
    fields = [("text", TEXTS[0])] + [(f"f{i}", "x") for i in range(100)]
    status, _, body = request(
        url, "/", urlencode(fields).encode("ascii"), content_type="application/x-www-form-urlencoded"
    )
    assert status == 413
    page = body.decode("utf8")
    check_page(page)
    assert (
        "the form has 101 fields, more than this server&#x27;s limit of 100" in page
        or "the form has 101 fields, more than this server's limit of 100" in page
    )


EXTERNAL = re.compile(r"""(?:\b(?:src|href|action)\s*=\s*["']?\s*|url\(\s*["']?|@import\s+["']?)(?:https?:)?//""", re.I)


def test_no_page_loads_anything_from_another_server(url):
    """/docs and /redoc loaded swagger-ui and redoc from public CDNs (blank
    pages offline): they are off, with a note that names /openapi.json, and
    no page refers to another server."""
    pages = {path: request(url, path) for path in ("/", "/docs", "/redoc")}
    pages["POST /"] = submit(url, TEXTS[0])
    assert pages["/"][0] == 200 and pages["POST /"][0] == 200
    for path in ("/docs", "/redoc"):
        status, headers, body = pages[path]
        assert status == 404 and headers["Content-Type"].startswith("text/html")
        assert 'href="/openapi.json"' in body.decode("utf8") and "CDN" in body.decode("utf8")
    for path, (_, _, body) in pages.items():
        assert not EXTERNAL.search(body.decode("utf8")), (path, EXTERNAL.search(body.decode("utf8")))
    assert request(url, "/openapi.json")[0] == 200
    assert EXTERNAL.search('<script src="https://cdn.example/x.js">') and EXTERNAL.search("<link href='//cdn.x/y.css'>")


class Stub:
    """A stand-in for the model that the tests control: records the texts it
    runs, in order; waits at a gate on a text that starts with "wait"; sleeps
    ``per_char`` seconds per character."""

    def __init__(self):
        self.order, self.per_char = [], 0.0
        self.entered, self.gate = threading.Event(), threading.Event()

    def __call__(self, doc):
        self.order.append(doc.text)
        if doc.text.startswith("wait"):
            self.entered.set()
            assert self.gate.wait(60)
        time.sleep(self.per_char * len(doc.text))
        return doc


STUB = [Stub()]


@spacy.Language.component("serve_test_stub")
def run_stub(doc):
    return STUB[0](doc)


def stub_pipeline(stub: Stub):
    STUB[0] = stub
    nlp = spacy.blank("en")
    nlp.add_pipe("serve_test_stub")
    return nlp


HEAD_TIMEOUT = BODY_TIMEOUT = 0.5


@pytest.fixture
def stub_server():
    """(url, stub, app): a server over the stub with short read timeouts,
    batches of at most 100 characters and a long keep-alive timeout."""
    stub = Stub()
    app = make_app(
        stub_pipeline(stub),
        max_chars=1000,
        max_texts=32,
        batch_size=4,
        batch_chars=100,
        head_timeout=HEAD_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        keep_alive_timeout=30,
    )
    try:
        with running_server(app) as url:
            yield url, stub, app
    finally:
        stub.gate.set()


def connect(url) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def http_request(path, body=b"", method="POST", content_type="application/json") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


def test_idle_and_half_sent_heads_are_closed(stub_server):
    """A connection that sends nothing, half a head, or a head a byte at a
    time is closed head_timeout after it starts (uvicorn kept them open
    forever: 100 of 100 after 30 s); the server answers others meanwhile."""
    url, _, _ = stub_server
    start = time.monotonic()
    idle = [connect(url) for _ in range(50)]
    halves = [connect(url) for _ in range(50)]
    for sock in halves:
        sock.sendall(b"POST /extract HTTP/1.1\r\nHost: test\r\nContent-Ty")
    assert request(url, "/health")[0] == 200
    for sock in idle:
        assert read_until_closed(sock) == b""
    for sock in halves:
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b"did not arrive within 0.5 s\n"), answer
    assert time.monotonic() - start < HEAD_TIMEOUT + 5
    for sock in idle + halves:
        sock.close()
    assert request(url, "/extract", {"text": "after"})[0] == 200


def test_head_sent_a_byte_at_a_time_is_closed(stub_server):
    """The head's deadline runs from its start: a byte every 0.1 s does not
    extend it."""
    url, _, _ = stub_server
    sock = connect(url)
    start = time.monotonic()
    head = http_request("/extract", b'{"text": "a"}')
    for byte in head[:30]:  # 3 s of trickle, if the server let it go on
        if select.select([sock], [], [], 0.1)[0]:
            break  # the server has answered
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
    assert time.monotonic() - start < 2.5
    assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    sock.close()


def test_half_sent_head_after_a_response_is_closed(stub_server):
    """On a kept-alive connection, the next request's head has the same deadline."""
    url, _, _ = stub_server
    sock = connect(url)
    sock.sendall(http_request("/health", method="GET"))
    response = http.client.HTTPResponse(sock)
    response.begin()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    start = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHo")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start < HEAD_TIMEOUT + 3  # not the keep-alive timeout (30 s)
    sock.close()


@pytest.mark.parametrize(
    "path,content_type,words",
    [
        ("/extract", "application/json", b'{"detail":"the request body did not arrive within 0.5 s"}'),
        ("/", "application/x-www-form-urlencoded", b"the request body did not arrive within 0.5 s"),
    ],
)
def test_half_sent_body_is_408_and_closed(stub_server, path, content_type, words):
    url, stub, _ = stub_server
    sock = connect(url)
    start = time.monotonic()
    sock.sendall(http_request(path, b'{"text": "never finished"}', content_type=content_type)[:-10])
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower() and words in answer
    assert time.monotonic() - start < BODY_TIMEOUT + 3
    sock.close()
    assert stub.order == []


def test_half_sent_body_of_a_route_that_ignores_it_is_closed(stub_server):
    """GET / answers without reading a body; the connection of a body that
    never ends is still closed (body_timeout and a second's grace)."""
    url, _, _ = stub_server
    sock = connect(url)
    start = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nabc")
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert time.monotonic() - start < BODY_TIMEOUT + 4
    sock.close()


def ask_in_background(url, body):
    """Send a request from a thread; a future of (status, seconds from now, parsed answer)."""

    def ask():
        start = time.monotonic()
        status, _, answer = request(url, "/extract", body)
        return status, time.monotonic() - start, json.loads(answer)

    pool = ThreadPoolExecutor(1)
    future = pool.submit(ask)
    pool.shutdown(wait=False)
    return future


def wait_until(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_work_of_a_disconnected_client_is_dropped(stub_server):
    """A request queued behind a busy model, whose client then disconnects,
    is not run (a one-sentence request waited 7 s behind two abandoned ones)."""
    url, stub, app = stub_server
    first = ask_in_background(url, {"text": "wait for the gate"})
    assert stub.entered.wait(30)
    abandoned = connect(url)
    abandoned.sendall(http_request("/extract", json.dumps({"texts": ["abandoned one", "abandoned two"]}).encode()))
    wait_until(lambda: app.state.extractor.queued() == 2)
    abandoned.close()
    wait_until(lambda: app.state.extractor.queued() == 1)
    small = ask_in_background(url, {"text": "small"})
    wait_until(lambda: app.state.extractor.queued() == 2)
    stub.gate.set()
    assert first.result(timeout=30)[0] == 200
    status, _, record = small.result(timeout=30)
    assert status == 200 and record["text"] == "small"
    assert stub.order == ["wait for the gate", "small"]


def test_small_request_is_not_held_behind_a_large_one(stub_server):
    """A one-text request that comes while another client's request of many
    texts is running waits for the batch in progress only (it waited for the
    whole large request: 17 s behind 18 s of work)."""
    url, stub, app = stub_server
    stub.per_char = 0.001
    large_texts = ["wait " + "x" * 85] + [f"large {i} " + "x" * 80 for i in range(19)]  # 90 characters: one a batch
    large = ask_in_background(url, {"texts": large_texts})
    assert stub.entered.wait(30)
    small = ask_in_background(url, {"text": "small"})
    wait_until(lambda: app.state.extractor.queued() == 2)
    stub.gate.set()
    status, small_seconds, record = small.result(timeout=60)
    assert status == 200 and record["text"] == "small"
    status, large_seconds, records = large.result(timeout=60)
    assert status == 200 and [r["text"] for r in records] == large_texts
    assert stub.order.index("small") == 1  # right after the batch in progress
    assert small_seconds < large_seconds


def test_extractor_takes_batches_fairly(reference):
    """Batches of at most batch_size texts and batch_chars characters (a
    longer text alone), each next text from the request with the fewest
    characters run so far; a cancelled request's texts are not run."""
    stub = Stub()
    calls = []
    nlp = stub_pipeline(stub)
    pipe = nlp.pipe

    def recording_pipe(texts, **kwargs):
        texts = list(texts)
        calls.append(texts)
        return pipe(texts, **kwargs)

    nlp.pipe = recording_pipe
    extractor = Extractor(nlp, batch_size=3, batch_chars=20)
    try:
        blocker = extractor.submit([("wait", {})])
        assert stub.entered.wait(30)
        large = extractor.submit([(f"large {i:02d}", {"i": i}) for i in range(8)])  # 8 characters each
        long = extractor.submit([("x" * 50, {})])
        cancelled = extractor.submit([("cancelled", {})])
        small = extractor.submit([("small", {})])
        assert cancelled.cancel()
        assert extractor.queued() == 4
        stub.gate.set()
        assert [r["i"] for r in large.result(timeout=30)] == list(range(8))
        assert small.result(timeout=30)[0]["text"] == "small" and long.result(timeout=30)[0]["text"] == "x" * 50
        blocker.result(timeout=30)
    finally:
        extractor.close()
    assert calls == [
        ["wait"],
        ["large 00", "small"],
        ["x" * 50],
        ["large 01", "large 02"],
        ["large 03", "large 04"],
        ["large 05", "large 06"],
        ["large 07"],
    ]
    with pytest.raises(RuntimeError, match="closed"):
        extractor.submit([("late", {})])


def test_timeouts_and_batches_are_options(monkeypatch, reference):
    """serve's CLI options reach serve(), make_app's timeouts reach uvicorn's
    configuration, and bad values are refused."""
    from typer.testing import CliRunner

    import spacy_spert.apps.serve as serve_module
    from spacy_spert.apps.serve.protocol import TimedH11Protocol, uvicorn_config
    from spacy_spert.cli import app as cli_app

    got = {}
    monkeypatch.setattr(serve_module, "serve", lambda model, **kwargs: got.update(kwargs, model=model))
    result = CliRunner().invoke(
        cli_app,
        [
            "serve",
            "some-model",
            "--batch-chars",
            "500",
            "--max-form-fields",
            "7",
            "--head-timeout",
            "2.5",
            "--body-timeout",
            "9",
            "--keep-alive-timeout",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert got["model"] == "some-model"
    assert {
        k: got[k] for k in ("batch_chars", "max_form_fields", "head_timeout", "body_timeout", "keep_alive_timeout")
    } == {"batch_chars": 500, "max_form_fields": 7, "head_timeout": 2.5, "body_timeout": 9.0, "keep_alive_timeout": 3.0}

    app = make_app(reference, head_timeout=2.5, body_timeout=9, keep_alive_timeout=3)
    try:
        config = uvicorn_config(app, port=0)
        assert issubclass(config.http, TimedH11Protocol)
        assert (config.http.head_timeout, config.http.body_timeout, config.timeout_keep_alive) == (2.5, 9, 3)
    finally:
        app.state.extractor.close()
    with pytest.raises(ValueError, match="timeouts must be positive"):
        make_app(reference, head_timeout=0)
    with pytest.raises(ValueError, match="at least 1"):
        Extractor(reference, batch_chars=0)
