"""A web app and JSON API over a trained pipeline: the library side of
``python -m spacy_spert serve``. Needs the ``serve`` extra (FastAPI and
uvicorn): ``pip install 'spacy-spert[serve]'``.

Routes (:func:`make_app`):

- ``GET /``: a page with a text box; submitting it (``POST /``, an HTML form)
  answers the page with the text drawn by :func:`~spacy_spert.apps.render.render`
  and a table of the entities and relations with their scores. The page has
  no script and is sent with a ``Content-Security-Policy`` that allows none,
  and every piece of text on it is escaped.
- ``POST /extract``: JSON in, JSON out, in the schema of ``predict``'s JSONL
  lines. ``{"text": "..."}`` (any other fields are carried through, as
  ``predict`` carries a JSONL line's fields) is answered with one record
  ``{..., "text", "entities", "relations"}``; ``{"texts": [...]}``, a list of
  strings or of such objects, with a list of records in the same order.
- ``GET /health``: ``{"status": "ok", "model", "pipeline", "spans_key",
  "limits"}``.
- ``GET /openapi.json`` and ``GET /docs``: the OpenAPI description (FastAPI's).

Errors are JSON ``{"detail": "what is wrong"}`` with a 4xx status: 400 for a
body that is empty, not UTF-8 or not JSON; 413 for a body, text or list of
texts over the limits (``max_chars`` per text, ``max_texts`` per request);
422 for JSON of the wrong shape (no ``text`` or ``texts``, a text that is not
a string, is empty or whitespace only, or holds an unpaired surrogate). A
request's error never affects the others.

The pipeline is loaded once. spaCy and torch must not run one pipeline in two
threads at once, so one worker thread (:class:`Extractor`) runs it: requests
queue their texts, and the worker takes what has queued (up to
``batch_size`` texts) as one ``nlp.pipe`` batch, then answers each request
with its own records. Requests are served concurrently (asynchronously) and
batched, never run on the pipeline in parallel.

The parts: ``requests.py`` (reading a request body, the limits, the 4xx
errors), ``extractor.py`` (the worker), ``app.py`` (the routes, the page,
running the server), ``schema.py`` (the records as pydantic models, for the
OpenAPI description).
"""
from .app import make_app, running_server, serve
from .extractor import Extractor
from .requests import RequestError, parse_extract_body

__all__ = ["Extractor", "RequestError", "make_app", "parse_extract_body", "running_server", "serve"]
