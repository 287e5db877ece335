"""The FastAPI app of ``serve`` (:func:`make_app`: the routes, the page, the
errors), running it (:func:`serve`) and running it in the background
(:func:`running_server`). See :mod:`spacy_spert.apps.serve` for the routes."""

import asyncio
import html
import json
import socket
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Set, Union

from spacy.language import Language

from ...io.label_studio_tasks import model_labels
from ...io.label_studio_tasks import model_version as pipeline_version
from ..render import render, shown
from .extractor import DEFAULT_BATCH_CHARS, DEFAULT_BATCH_SIZE, Extractor
from .label_studio import LS_BODY_FACTOR, add_label_studio_routes
from .requests import (
    BODY_OVERHEAD,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_FORM_FIELDS,
    DEFAULT_MAX_TEXTS,
    FORM_BYTES_PER_CHAR,
    ClientGone,
    Item,
    RequestError,
    check_text,
    parse_extract_body,
    parse_form_text,
)

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DOCS_NOTE", "PAGE", "make_app", "running_server", "serve"]

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
<div class="model">{model} &middot; <a href="/openapi.json">API</a>: <code>POST /extract</code> with <code>{{"text": "..."}}</code></div>
<form method="post" action="/" accept-charset="utf-8">
<textarea name="text" id="text" placeholder="Type or paste text" maxlength="{max_chars}" required>{text}</textarea>
<br><button type="submit" id="submit">Extract</button>
</form>
{error}
<div id="result">{result}</div>
</body>
</html>
"""


# /docs and /redoc: FastAPI's pages load their scripts, styles and fonts from
# public CDNs (blank behind a firewall), and no installed package has them.
DOCS_NOTE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>No API pages</title></head>
<body>
<p>This server does not serve the interactive API pages (/docs, /redoc): they would load their scripts, styles
and fonts from public CDNs. The API's OpenAPI description is at <a href="/openapi.json">/openapi.json</a>; open it
in any OpenAPI viewer.</p>
</body>
</html>
"""


class _Nosniff:
    """ASGI middleware: ``X-Content-Type-Options: nosniff`` on every answer
    (plain ASGI, so that the routes' receive is the server's own and they
    see their clients disconnect)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_nosniff(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_nosniff)


async def _wait_for_disconnect(request: Any) -> None:
    # After the body, the server's receive() waits until the client disconnects.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def make_app(
    nlp: Language,
    *,
    spans_key: Optional[str] = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_texts: int = DEFAULT_MAX_TEXTS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batch_chars: int = DEFAULT_BATCH_CHARS,
    max_form_fields: int = DEFAULT_MAX_FORM_FIELDS,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    title: str = "spacy-spert",
    model_version: Optional[str] = None,
) -> Any:
    """The web app and API over a loaded pipeline (see the module docstring).

    nlp (Language): A pipeline with a ``spert`` component, loaded once.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    max_chars (int): The most characters of one text (longer: 413).
    max_texts (int): The most texts of one request (more: 413).
    batch_size (int): The most texts the worker runs as one batch.
    batch_chars (int): The most characters the worker runs as one batch (a
        longer text is a batch of its own); a request waits for about one
        such batch of another's, whatever their sizes.
    max_form_fields (int): The most fields of a form posted to the page
        (more: 413).
    head_timeout (float): Seconds for a request's line and headers to arrive
        (then 408 and the connection is closed).
    body_timeout (float): Seconds for a request's body to arrive after its
        headers (then 408 and the connection is closed).
    keep_alive_timeout (float): Seconds an idle connection is kept open
        after a response.
    title (str): The page's title.
    model_version (Optional[str]): The model version the Label Studio routes
        answer (default: ``LANG_NAME-VERSION`` of the pipeline's meta).
    RETURNS (fastapi.FastAPI): The app; run it with uvicorn (:func:`serve`) or
        :func:`running_server`, which use its timeouts (``app.state.timeouts``).
        Its worker thread stops at the app's shutdown.
    """
    _require_serve_extra()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.requests import ClientDisconnect

    from .schema import EXTRACT_REQUEST_SCHEMA, ErrorModel, Health, Record

    if min(max_chars, max_texts, max_form_fields) < 1:
        raise ValueError(
            f"max_chars, max_texts and max_form_fields must be at least 1, got {max_chars}, {max_texts} "
            f"and {max_form_fields}"
        )
    if min(head_timeout, body_timeout, keep_alive_timeout) <= 0:
        raise ValueError(f"the timeouts must be positive, got {head_timeout}, {body_timeout} and {keep_alive_timeout}")
    extractor = Extractor(nlp, spans_key=spans_key, batch_size=batch_size, batch_chars=batch_chars)
    max_body = max_texts * max_chars * 6 + BODY_OVERHEAD
    max_form = max_chars * FORM_BYTES_PER_CHAR + BODY_OVERHEAD
    model = pipeline_version(nlp)
    version = model_version if model_version is not None else model

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        extractor.close()

    app = FastAPI(
        title=title,
        version=_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description=(
            "Joint entity and relation extraction with a spaCy pipeline (SpERT). `POST /extract` answers in the "
            "schema of `python -m spacy_spert predict`'s JSONL lines."
        ),
    )
    app.state.extractor = extractor
    app.state.timeouts = {
        "head_timeout": head_timeout,
        "body_timeout": body_timeout,
        "keep_alive_timeout": keep_alive_timeout,
    }
    app.add_middleware(_Nosniff)

    async def read_all(request: Request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestError(413, f"the request body has {length} bytes, more than this server's limit of {limit}")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"the request body has more than this server's limit of {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ClientGone() from None
        return b"".join(chunks)

    async def read_body(request: Request, limit: int) -> bytes:
        try:
            return await asyncio.wait_for(read_all(request, limit), body_timeout)
        except asyncio.TimeoutError:
            raise RequestError(408, f"the request body did not arrive within {body_timeout:g} s") from None

    async def run(request: Request, items: List[Item]) -> List[Dict[str, Any]]:
        """The records of items; ClientGone (their work dropped) if the client disconnects first."""
        records = asyncio.wrap_future(extractor.submit(items))
        gone = asyncio.ensure_future(_wait_for_disconnect(request))
        waiting: Set[asyncio.Future[Any]] = {records, gone}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not records.done():
                records.cancel()  # cancels the extractor's future: the worker drops what has not run
            gone.cancel()
        if records.cancelled():
            raise ClientGone()
        return records.result()

    def closing(status: int) -> Dict[str, str]:
        # after a 408 the rest of the body may still come: the connection cannot be reused
        return {"Connection": "close"} if status == 408 else {}

    def error(e: RequestError) -> JSONResponse:
        return JSONResponse({"detail": e.detail}, status_code=e.status, headers=closing(e.status))

    errors = {
        status: {"model": ErrorModel, "description": text}
        for status, text in (
            (400, "Empty body, not UTF-8, not JSON or nested too deeply"),
            (408, "The body did not arrive in time"),
            (413, "Body, text or list of texts over the limits"),
            (422, "JSON of the wrong shape, an empty text, a number out of range or an unpaired surrogate"),
        )
    }

    @app.post(
        "/extract",
        response_model=Union[Record, List[Record]],
        responses=errors,  # type: ignore[arg-type]
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": EXTRACT_REQUEST_SCHEMA}}}
        },
        summary="Entities and relations of a text or a list of texts",
    )
    async def extract(request: Request) -> Any:
        """`{"text": "..."}` (other fields are carried through) gives one record; `{"texts": [...]}` (strings, or
        objects with a "text") gives a list of records in the same order. A record is a line of `predict`'s JSONL:
        the carried fields, "text", "entities" (character and token offsets with an exclusive end, label, score,
        text) and "relations" (head and tail as indices into "entities", label, score)."""
        try:
            single, items = parse_extract_body(await read_body(request, max_body), max_chars, max_texts)
            records = await run(request, items)
        except RequestError as e:
            return error(e)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it: uvicorn drops an answer to a closed connection
        return JSONResponse(records[0] if single else records)

    @app.get("/health", response_model=Health, summary="The server is up; its model and limits")
    async def health() -> Dict[str, Any]:
        return {
            "status": "ok",
            "model_class": "spacy-spert",
            "model_version": version,
            "model": model,
            "pipeline": list(nlp.pipe_names),
            "spans_key": extractor.spans_key,
            "limits": {"max_chars": max_chars, "max_texts": max_texts},
        }

    def page(text: str = "", result: str = "", message: str = "", status: int = 200) -> HTMLResponse:
        body = PAGE.format(
            title=html.escape(title),
            model=html.escape(model),
            max_chars=max_chars,
            text=shown(text),
            result=result,
            error=f'<div class="error" id="error">{shown(message)}</div>' if message else "",
        )
        return HTMLResponse(
            body,
            status_code=status,
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store", **closing(status)},
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return page()

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def submit(request: Request) -> Response:
        text = ""
        try:
            text = parse_form_text(await read_body(request, max_form), max_form_fields)
            check_text(text, "the text", max_chars)
            records = await run(request, [(text, {})])
        except RequestError as e:
            return page(text[:max_chars], message=e.detail, status=e.status)
        except ClientGone:
            return Response(status_code=499)
        result = render(records, table=True, jupyter=False) or ""
        result += (
            "<details><summary>JSON (as <code>POST /extract</code> answers)</summary>"
            f"<pre>{shown(json.dumps(records[0], ensure_ascii=False, indent=1))}</pre></details>"
        )
        return page(text, result=result)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
    async def no_docs() -> HTMLResponse:
        return HTMLResponse(DOCS_NOTE, status_code=404, headers={"Content-Security-Policy": CSP})

    add_label_studio_routes(
        app,
        read_body=read_body,
        run=run,
        error=error,
        max_body=max_body * LS_BODY_FACTOR,
        max_chars=max_chars,
        max_texts=max_texts,
        version=version,
        labels=model_labels(nlp),
        responses=errors,
    )
    return app


def _version() -> str:
    from ... import __version__

    return __version__


def serve(
    model: Union[str, Language],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    gpu_id: int = -1,
    log_level: str = "info",
    **app_settings: Any,
) -> None:
    """Load a pipeline and serve :func:`make_app` with uvicorn until
    interrupted.

    model (str / Language): A pipeline directory, package name or pipeline.
    host (str): The interface; the default serves this machine only.
    port (int): The port.
    gpu_id (int): The GPU for a pipeline loaded here, -1 for the CPU.
    log_level (str): uvicorn's log level.
    app_settings: The keyword arguments of :func:`make_app` (spans_key, the
        limits, timeouts and model_version).
    RAISES: SystemExit (status 3, as ``uvicorn.run``) if the server does not
        start, e.g. its port is taken (uvicorn logs why).
    """
    _require_serve_extra()
    import spacy
    import uvicorn

    from .protocol import uvicorn_config

    if isinstance(model, Language):
        nlp = model
    else:
        if gpu_id >= 0:
            spacy.require_gpu(gpu_id)
        nlp = spacy.load(model)
    app = make_app(nlp, **app_settings)
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level=log_level))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise SystemExit(3)


@contextmanager
def running_server(app: Any, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Run an app under uvicorn in a background thread (for tests, scripts and
    notebooks) on ``port`` (0: a free one) and stop it at the end.

    app: The ASGI app, e.g. from :func:`make_app` (whose timeouts the server
        uses; see :func:`~spacy_spert.apps.serve.protocol.uvicorn_config`).
    host (str): The interface. port (int): The port; 0 for a free one.
    log_level (str): uvicorn's log level.
    YIELDS (str): The server's URL, e.g. ``http://127.0.0.1:41234``.
    """
    _require_serve_extra()
    import time

    import uvicorn

    from .protocol import uvicorn_config

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn_config(app, log_level=log_level, lifespan="on"))
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
