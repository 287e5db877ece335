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
- ``GET /health``: ``{"status": "ok", "model_class", "model_version",
  "model", "pipeline", "spans_key", "limits"}``.
- ``POST /setup``, ``POST /predict``, ``POST /webhook``: a Label Studio ML
  backend (Label Studio 1.23's protocol; connect the server's URL to a
  project): ``/setup`` reads the project's labeling config and answers the
  model version and how the model's labels map onto the config's (what does
  not match is also logged); ``/predict`` answers one prediction per task,
  in order, with the entities and relations of ``/extract``, region ids,
  code-point offsets and scores, and a task score (the lowest of its scores:
  sort ascending to see the least certain first); ``/webhook`` accepts
  Label Studio's events and starts no training. See ``label_studio.py``.
- ``GET /openapi.json``: the OpenAPI description (FastAPI's). FastAPI's
  ``/docs`` and ``/redoc`` pages are off (a 404 with a note): they load their
  scripts, styles and fonts from public CDNs, and no installed package has
  them. No page refers to another server.

Errors are JSON ``{"detail": "what is wrong"}`` with a 4xx status: 400 for a
body that is empty, not UTF-8, not JSON (``NaN``, ``Infinity``) or nested over
100 levels; 408 for a body that does not arrive within ``body_timeout``; 413
for a body, text or list of texts over the limits (``max_chars`` per text,
``max_texts`` per request) or a form with over ``max_form_fields`` fields;
422 for JSON of the wrong shape (no ``text`` or ``texts``, a text that is not
a string, is empty or whitespace only), a number out of range (an integer of
over 4,300 digits, a float beyond about 1.8e308 such as ``1e999``) or a
string or field name with an unpaired surrogate, in any field. A request's
error never affects the others.

One client cannot stall or slow the others:

- Read timeouts (``protocol.py``): a connection is closed if a request's head
  has not arrived ``head_timeout`` seconds after it starts (a connection that
  sends nothing included), or its body ``body_timeout`` seconds after the
  head (answered 408); idle connections after a response close after
  ``keep_alive_timeout``.
- The pipeline is loaded once. spaCy and torch must not run one pipeline in
  two threads at once, so one worker thread (:class:`Extractor`) runs it:
  requests queue their texts, and the worker runs them in batches of at most
  ``batch_size`` texts and ``batch_chars`` characters (a longer text alone),
  each next text taken from the request with the fewest characters run so
  far. A small request thus waits for about the batch in progress, not for
  all of a large request queued before it. Requests are served concurrently
  (asynchronously) and batched, never run on the pipeline in parallel.
- A request whose client disconnects while it waits is cancelled: its texts
  that have not run are dropped.

The parts: ``requests.py`` (reading a request body and the form, the limits,
the 4xx errors), ``extractor.py`` (the worker and its fair batches),
``protocol.py`` (the read timeouts, in uvicorn's HTTP protocol), ``app.py``
(the routes, the page, running the server), ``label_studio.py`` (the Label
Studio ML backend routes, on the format of
:mod:`spacy_spert.io.label_studio_tasks`), ``schema.py`` (the records as
pydantic models, for the OpenAPI description).
"""

from .app import make_app, running_server, serve
from .extractor import Extractor
from .requests import RequestError, parse_extract_body

__all__ = ["Extractor", "RequestError", "make_app", "parse_extract_body", "running_server", "serve"]
