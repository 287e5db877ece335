"""The FastAPI app of ``serve`` (:func:`make_app`: the routes, the page, the
errors), running it (:func:`serve`) and running it in the background
(:func:`running_server`). See :mod:`spacy_spert.apps.serve` for the routes."""
import asyncio
import html
import json
import socket
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Union

from spacy.language import Language

from ..render import render, shown
from .extractor import DEFAULT_BATCH_SIZE, Extractor
from .requests import BODY_OVERHEAD, DEFAULT_MAX_CHARS, DEFAULT_MAX_TEXTS, RequestError, check_text, parse_extract_body

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "PAGE", "make_app", "running_server", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"serving needs FastAPI and uvicorn ({e}): pip install 'spacy-spert[serve]'") from None


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2rem; color: #222; }}
h1 {{ font-size: 1.4rem; margin: 0 0 0.2rem 0; }}
.model {{ color: #666; margin-bottom: 1rem; font-size: 0.9rem; }}
textarea {{ width: 100%; max-width: 976px; height: 7rem; font-size: 15px; box-sizing: border-box; }}
button {{ font-size: 15px; padding: 0.3rem 1.2rem; margin-top: 0.4rem; }}
.error {{ color: #a00; font-weight: bold; margin: 1rem 0; }}
#result {{ margin-top: 1.5rem; }}
pre {{ white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: 0.5rem; font-size: 12px; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div class="model">{model} &middot; <a href="/docs">API</a>: <code>POST /extract</code> with <code>{{"text": "..."}}</code></div>
<form method="post" action="/" accept-charset="utf-8">
<textarea name="text" id="text" placeholder="Type or paste text" maxlength="{max_chars}" required>{text}</textarea>
<br><button type="submit" id="submit">Extract</button>
</form>
{error}
<div id="result">{result}</div>
</body>
</html>
"""


def _model_name(nlp: Language) -> str:
    meta = nlp.meta
    return f"{meta.get('lang', '')}_{meta.get('name', 'pipeline')}-{meta.get('version', '')}"


def make_app(nlp: Language, *, spans_key: Optional[str] = None, max_chars: int = DEFAULT_MAX_CHARS,
             max_texts: int = DEFAULT_MAX_TEXTS, batch_size: int = DEFAULT_BATCH_SIZE,
             title: str = "spacy-spert") -> Any:
    """The web app and API over a loaded pipeline (see the module docstring).

    nlp (Language): A pipeline with a ``spert`` component, loaded once.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    max_chars (int): The most characters of one text (longer: 413).
    max_texts (int): The most texts of one request (more: 413).
    batch_size (int): The most texts the worker runs as one batch.
    title (str): The page's title.
    RETURNS (fastapi.FastAPI): The app; run it with uvicorn (:func:`serve`) or
        :func:`running_server`. Its worker thread stops at the app's shutdown.
    """
    _require_serve_extra()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    from .schema import EXTRACT_REQUEST_SCHEMA, ErrorModel, Health, Record

    if max_chars < 1 or max_texts < 1:
        raise ValueError(f"max_chars and max_texts must be at least 1, got {max_chars} and {max_texts}")
    extractor = Extractor(nlp, spans_key=spans_key, batch_size=batch_size)
    max_body = max_texts * max_chars * 6 + BODY_OVERHEAD
    model = _model_name(nlp)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        extractor.close()

    app = FastAPI(title=title, version=_version(), lifespan=lifespan, description=(
        "Joint entity and relation extraction with a spaCy pipeline (SpERT). `POST /extract` answers in the "
        "schema of `python -m spacy_spert predict`'s JSONL lines."))
    app.state.extractor = extractor

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise RequestError(413, f"the request body has {length} bytes, more than this server's limit of {max_body}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise RequestError(413, f"the request body has more than this server's limit of {max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def error(e: RequestError) -> JSONResponse:
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    errors = {status: {"model": ErrorModel, "description": text} for status, text in (
        (400, "Empty body, not UTF-8 or not JSON"), (413, "Body, text or list of texts over the limits"),
        (422, "JSON of the wrong shape, or an empty text"))}

    @app.post("/extract", response_model=Union[Record, List[Record]], responses=errors,  # type: ignore[arg-type]
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": EXTRACT_REQUEST_SCHEMA}}}},
              summary="Entities and relations of a text or a list of texts")
    async def extract(request: Request) -> Any:
        """`{"text": "..."}` (other fields are carried through) gives one record; `{"texts": [...]}` (strings, or
        objects with a "text") gives a list of records in the same order. A record is a line of `predict`'s JSONL:
        the carried fields, "text", "entities" (character and token offsets with an exclusive end, label, score,
        text) and "relations" (head and tail as indices into "entities", label, score)."""
        try:
            single, items = parse_extract_body(await read_body(request), max_chars, max_texts)
        except RequestError as e:
            return error(e)
        records = await asyncio.wrap_future(extractor.submit(items))
        return JSONResponse(records[0] if single else records)

    @app.get("/health", response_model=Health, summary="The server is up; its model and limits")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "model": model, "pipeline": list(nlp.pipe_names), "spans_key": extractor.spans_key,
                "limits": {"max_chars": max_chars, "max_texts": max_texts}}

    def page(text: str = "", result: str = "", message: str = "", status: int = 200) -> HTMLResponse:
        body = PAGE.format(title=html.escape(title), model=html.escape(model), max_chars=max_chars, text=shown(text),
                           result=result, error=f'<div class="error" id="error">{shown(message)}</div>' if message else "")
        return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": CSP,
                                                                "Cache-Control": "no-store"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return page()

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def submit(request: Request) -> HTMLResponse:
        from urllib.parse import parse_qs

        text = ""
        try:
            body = await read_body(request)
            try:
                form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16, errors="strict")
            except (UnicodeDecodeError, ValueError):
                raise RequestError(400, "the form is not UTF-8") from None
            text = form.get("text", [""])[0].replace("\r\n", "\n")
            check_text(text, "the text", max_chars)
        except RequestError as e:
            return page(text[:max_chars], message=e.detail, status=e.status)
        records = await asyncio.wrap_future(extractor.submit([(text, {})]))
        result = render(records, table=True, jupyter=False) or ""
        result += ('<details><summary>JSON (as <code>POST /extract</code> answers)</summary>'
                   f'<pre>{shown(json.dumps(records[0], ensure_ascii=False, indent=1))}</pre></details>')
        return page(text, result=result)

    return app


def _version() -> str:
    from ... import __version__

    return __version__


def serve(model: Union[str, Language], *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          spans_key: Optional[str] = None, max_chars: int = DEFAULT_MAX_CHARS, max_texts: int = DEFAULT_MAX_TEXTS,
          batch_size: int = DEFAULT_BATCH_SIZE, gpu_id: int = -1, log_level: str = "info") -> None:
    """Load a pipeline and serve :func:`make_app` with uvicorn until
    interrupted.

    model (str / Language): A pipeline directory, package name or pipeline.
    host (str): The interface; the default serves this machine only.
    port (int): The port.
    spans_key, max_chars, max_texts, batch_size: As :func:`make_app`.
    gpu_id (int): The GPU for a pipeline loaded here, -1 for the CPU.
    log_level (str): uvicorn's log level.
    """
    _require_serve_extra()
    import spacy
    import uvicorn

    if isinstance(model, Language):
        nlp = model
    else:
        if gpu_id >= 0:
            spacy.require_gpu(gpu_id)
        nlp = spacy.load(model)
    app = make_app(nlp, spans_key=spans_key, max_chars=max_chars, max_texts=max_texts, batch_size=batch_size)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@contextmanager
def running_server(app: Any, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Run an app under uvicorn in a background thread (for tests, scripts and
    notebooks) on ``port`` (0: a free one) and stop it at the end.

    app: The ASGI app, e.g. from :func:`make_app`.
    host (str): The interface. port (int): The port; 0 for a free one.
    log_level (str): uvicorn's log level.
    YIELDS (str): The server's URL, e.g. ``http://127.0.0.1:41234``.
    """
    _require_serve_extra()
    import time

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        bound_host, bound_port = sock.getsockname()[:2]
        yield f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
