"""``serve`` as a Label Studio ML backend: the routes Label Studio 1.23 calls on a model connected to a
project (Settings > Model > Connect model, URL ``http://HOST:PORT``), on the same app, pipeline, worker,
limits and errors as ``POST /extract``.

- ``GET /health``: the app's own (any 2xx JSON is up for Label Studio): ``{"status": "ok", "model_class",
  "model_version", ...}``.
- ``POST /setup`` ``{"project": "ID.CREATED", "schema": LABELING_CONFIG_XML, ...}``: reads the labeling
  config (:func:`~spacy_spert.io.label_studio_tasks.parse_label_config`), keeps it for the project (in
  memory, the last :data:`MAX_PROJECTS` projects) and answers ``{"model_version", "labels", "warnings"}``:
  how the model's entity and relation labels map onto the config's ``<Labels>`` and ``<Relations>``
  (``mapped``; ``model_only``: left out of predictions; ``config_only``: never predicted) and one line per
  problem, which the server also logs (logger ``spacy_spert.serve``, once per project and config). A config
  that is not XML, has a DTD, or no ``<Labels>`` on a ``<Text>`` is a 422. Label Studio calls it on every
  listing of the backend: it is cheap (configs are parsed once).
- ``POST /predict`` ``{"tasks": [task, ...], "project", "label_config", "params"}``: one prediction per task,
  in order, ``{"results": [{"model_version", "score", "result"}, ...]}`` (the format of
  :mod:`spacy_spert.io.label_studio_tasks`: regions with ids, labels, code-point offsets, text and score;
  relations with ``from_id``, ``to_id``, ``direction``, labels and score; the task's ``score``, the lowest
  of its scores, to sort by uncertainty). The names and labels come from the request's ``label_config``,
  else the project's from ``/setup``, else Label Studio's defaults (``label``, ``text``, ``$text``, the
  model's labels). The text is ``data[KEY]`` of the config's ``<Text value="$KEY">``. The texts run on the
  worker as ``/extract``'s do (fair batches, dropped when the client goes), so the entities and relations
  are ``predict``'s. A task whose text is empty or whitespace only gets an empty result; more than
  ``max_texts`` tasks or a text over ``max_chars`` is a 413, a task without its text a 422 naming the task
  (index and id): Label Studio stores no prediction of a batch that fails, so select at most ``max_texts``
  tasks at a time (``serve --max-texts``). ``params.context`` (interactive pre-annotation) is not used.
- ``POST /webhook`` ``{"action", ...}``: accepts Label Studio's events (``ANNOTATION_CREATED``, ...,
  ``START_TRAINING``) at once with ``{"status": "ok", "action"}``; it starts no training (train with ``spacy
  train`` on ``import label-studio`` of the project's export) and says so for ``START_TRAINING``.

A body may be :data:`LS_BODY_FACTOR` times as large as ``/extract``'s: Label Studio sends each task with its
annotations and predictions. Errors are ``/extract``'s: JSON ``{"detail"}`` with 400, 408, 413 or 422.
"""

import hashlib
import logging
import unicodedata
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from ...io.label_studio_tasks import (
    DEFAULT_CONFIG,
    LabelConfig,
    LabelConfigError,
    parse_label_config,
    record_to_prediction,
    task_score,
)
from ...io.validation import json_type
from .requests import ClientGone, Item, RequestError, check_text, decode_body

__all__ = [
    "LOGGER",
    "LS_BODY_FACTOR",
    "MAX_PROJECTS",
    "ConfigCache",
    "add_label_studio_routes",
    "parse_predict_body",
    "parse_setup_body",
    "parse_webhook_body",
]

LOGGER = logging.getLogger("spacy_spert.serve")
# A Label Studio body against /extract's limit: tasks come with their annotations and predictions.
LS_BODY_FACTOR = 4
# Projects whose labeling config is kept, and parsed configs cached (a config is parsed once).
MAX_PROJECTS = 1000
TRAINING_NOTE = (
    "this server does not train: export the project (JSON), import it with `python -m spacy_spert import "
    "label-studio`, train with `spacy train` and serve the new model"
)


class ConfigCache:
    """The labeling configs of the projects (from ``/setup``) and the configs parsed so far, each the last
    ``limit`` used, so that requests cannot grow the server's memory without bound.

    limit (int): The most projects, and the most parsed configs, kept.
    """

    def __init__(self, limit: int = MAX_PROJECTS) -> None:
        self.limit = limit
        self.projects: OrderedDict[str, LabelConfig] = OrderedDict()
        self.parsed: OrderedDict[str, LabelConfig] = OrderedDict()

    def parse(self, xml_text: str) -> LabelConfig:
        """A labeling config, parsed once (RAISES: LabelConfigError)."""
        key = hashlib.sha256(xml_text.encode("utf-8")).hexdigest()  # not the text: configs may be large
        config = self.parsed.get(key)
        if config is None:
            config = parse_label_config(xml_text)
        _keep(self.parsed, key, config, self.limit)
        return config

    def set_project(self, project: str, config: LabelConfig) -> bool:
        """Keep a project's config; RETURNS (bool): whether it is new or changed."""
        changed = self.projects.get(project) != config
        _keep(self.projects, project, config, self.limit)
        return changed

    def project(self, project: Optional[str]) -> Optional[LabelConfig]:
        """The config of a project from ``/setup``, or None."""
        return self.projects.get(project) if project is not None else None


def _keep(cache: "OrderedDict[str, LabelConfig]", key: str, config: LabelConfig, limit: int) -> None:
    cache[key] = config
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _one_line(text: str) -> str:
    """Text from a request, safe for one log line: control characters (a newline could forge a log
    record) as escapes."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c)[0] == "C" else c for c in text)


def _object(body: bytes, route: str, example: str) -> Dict[str, Any]:
    obj = decode_body(body)
    if not isinstance(obj, dict):
        raise RequestError(422, f"expected a JSON object {example} (Label Studio's {route}), got {json_type(obj)}")
    return obj


def _project(obj: Dict[str, Any]) -> Optional[str]:
    project = obj.get("project")
    if project is None:
        return None
    if isinstance(project, bool) or not isinstance(project, (str, int)):
        raise RequestError(
            422, f"field 'project' must be a string (Label Studio's ID.CREATED), got {json_type(project)}"
        )
    return str(project)


def parse_setup_body(body: bytes, configs: ConfigCache) -> Tuple[Optional[str], LabelConfig]:
    """Read a ``POST /setup`` body.

    body (bytes): The request body. configs (ConfigCache): Parses the config.
    RETURNS (Tuple[Optional[str], LabelConfig]): The project (None if not given) and its labeling config.
    RAISES: RequestError (400 not JSON, 422 no ``schema`` or one that cannot be read).
    """
    obj = _object(body, "/setup", '{"project": ..., "schema": LABELING_CONFIG}')
    if "schema" not in obj:
        raise RequestError(422, "no field 'schema' (the project's labeling config, XML)")
    schema = obj["schema"]
    if not isinstance(schema, str):
        raise RequestError(422, f"field 'schema' must be a string (the labeling config, XML), got {json_type(schema)}")
    try:
        return _project(obj), configs.parse(schema)
    except LabelConfigError as e:
        raise RequestError(422, f"field 'schema': {e}") from None


def parse_predict_body(
    body: bytes, configs: ConfigCache, max_chars: int, max_texts: int
) -> Tuple[LabelConfig, List[Optional[str]]]:
    """Read a ``POST /predict`` body.

    body (bytes): The request body. configs (ConfigCache): The projects' configs, and parses the request's.
    max_chars (int): The most characters of one text. max_texts (int): The most tasks.
    RETURNS (Tuple[LabelConfig, List[Optional[str]]]): The config to predict in, and each task's text (None:
        empty or whitespace only, answered with an empty result).
    RAISES: RequestError naming the task (index and id) and field: 413 over the limits, else 4xx.
    """
    obj = _object(body, "/predict", '{"tasks": [...]}')
    project = _project(obj)
    config = configs.project(project) or DEFAULT_CONFIG
    if obj.get("label_config") is not None:
        if not isinstance(obj["label_config"], str):
            raise RequestError(422, f"field 'label_config' must be a string, got {json_type(obj['label_config'])}")
        try:
            config = configs.parse(obj["label_config"])
        except LabelConfigError as e:
            raise RequestError(422, f"field 'label_config': {e}") from None
    if "tasks" not in obj:
        fields = ", ".join(repr(k) for k in obj) or "none"
        raise RequestError(422, f"expected a field 'tasks' (a list of Label Studio tasks), got fields: {fields}")
    tasks = obj["tasks"]
    if not isinstance(tasks, list):
        raise RequestError(422, f"field 'tasks' must be a list, got {json_type(tasks)}")
    if not tasks:
        raise RequestError(422, "field 'tasks' is an empty list")
    if len(tasks) > max_texts:
        raise RequestError(
            413,
            f"field 'tasks' has {len(tasks)} tasks, more than this server's limit of {max_texts} (serve "
            "--max-texts): select fewer tasks at a time",
        )
    key = config.text_key
    texts: List[Optional[str]] = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise RequestError(422, f"tasks[{i}] must be a task object with 'data', got {json_type(task)}")
        task_id = task.get("id")
        where = f"tasks[{i}]" + (f" (id {task_id})" if isinstance(task_id, (int, str)) else "")
        data = task.get("data")
        if not isinstance(data, dict):
            raise RequestError(422, f"{where}: field 'data' must be an object, got {json_type(data)}")
        if key not in data:
            have = ", ".join(repr(k) for k in data) or "none"
            raise RequestError(
                422,
                f"{where}: no field 'data.{key}' (the labeling config's <Text> reads ${key}; the task's data "
                f"has: {have})",
            )
        text = data[key]
        if isinstance(text, str) and not text.strip():
            texts.append(None)
        else:
            texts.append(check_text(text, f"{where}: field 'data.{key}'", max_chars))
    return config, texts


def parse_webhook_body(body: bytes) -> Tuple[str, Optional[str]]:
    """Read a ``POST /webhook`` body.

    RETURNS (Tuple[str, Optional[str]]): The event's ``action`` and project.
    RAISES: RequestError (400 not JSON, 422 no ``action``).
    """
    obj = _object(body, "/webhook", '{"action": ..., "project": ...}')
    action = obj.get("action")
    if not isinstance(action, str) or not action:
        raise RequestError(422, f"field 'action' must be a non-empty string, got {json_type(action)}")
    project = obj.get("project")
    if isinstance(project, dict):  # events carry the project object; START_TRAINING its id
        project = project.get("id")
    return action, None if project is None else str(project)


def add_label_studio_routes(
    app: Any,
    *,
    read_body: Callable[[Any, int], Awaitable[bytes]],
    run: Callable[[Any, List[Item]], Awaitable[List[Dict[str, Any]]]],
    error: Callable[[RequestError], Any],
    max_body: int,
    max_chars: int,
    max_texts: int,
    version: str,
    labels: Tuple[Sequence[str], Sequence[str]],
    responses: Optional[Dict[int, Any]] = None,
) -> ConfigCache:
    """Add ``POST /setup``, ``/predict`` and ``/webhook`` (see the module docstring) to the app of
    :func:`~spacy_spert.apps.serve.make_app`, which passes its own body reader, worker and errors.

    app (fastapi.FastAPI): The app.
    read_body (Callable): ``await read_body(request, limit)``: the body (RequestError 408/413, ClientGone).
    run (Callable): ``await run(request, items)``: the records of (text, fields) items, from the worker.
    error (Callable): The JSON response of a RequestError.
    max_body (int): The most bytes of a body. max_chars, max_texts (int): ``/extract``'s limits.
    version (str): The model version answered. labels: The model's entity and relation labels.
    responses (Optional[Dict[int, Any]]): The error responses, for the OpenAPI description.
    RETURNS (ConfigCache): The projects' labeling configs.
    """
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    configs = ConfigCache()
    entity_labels, relation_labels = labels

    async def answer(request: Request, handler: Callable[[bytes], Awaitable[Any]]) -> Any:
        try:
            return JSONResponse(await handler(await read_body(request, max_body)))
        except RequestError as e:
            return error(e)
        except ClientGone:
            return Response(status_code=499)

    docs: Dict[str, Any] = {"responses": responses or {}, "tags": ["Label Studio ML backend"]}

    @app.post("/setup", summary="Label Studio: a project's labeling config; the model version", **docs)
    async def setup(request: Request) -> Any:
        """`{"project", "schema": LABELING_CONFIG}` gives `{"model_version", "labels", "warnings"}`: how the
        model's labels map onto the config's, and what does not match."""

        async def handle(body: bytes) -> Dict[str, Any]:
            try:
                project, config = parse_setup_body(body, configs)
            except RequestError as e:
                LOGGER.warning("Label Studio /setup refused (%d): %s", e.status, _one_line(e.detail))
                raise
            report = config.check_labels(entity_labels, relation_labels)
            if project is None or configs.set_project(project, config):  # logged once per project and config
                name = _one_line(project or "(none)")
                for warning in report["warnings"]:
                    LOGGER.warning("Label Studio project %s: %s", name, _one_line(warning))
                if not report["warnings"]:
                    LOGGER.info("Label Studio project %s: the labeling config has the model's labels", name)
            warnings = report.pop("warnings")
            return {"model_version": version, "labels": report, "warnings": warnings}

        return await answer(request, handle)

    @app.post("/predict", summary="Label Studio: predictions of a batch of tasks, in order", **docs)
    async def predict(request: Request) -> Any:
        """`{"tasks": [...], "label_config", "project"}` gives `{"results": [{"model_version", "score",
        "result"}, ...]}`, one per task in order: regions (id, from_name, to_name, labels, code-point offsets,
        text, score) and relations (from_id, to_id, direction, labels, score); "score" is the lowest of the
        task's scores (sort ascending: least certain first)."""

        async def handle(body: bytes) -> Dict[str, Any]:
            config, texts = parse_predict_body(body, configs, max_chars, max_texts)
            items: List[Item] = [(text, {}) for text in texts if text is not None]
            records = iter(await run(request, items) if items else [])
            results = [
                record_to_prediction(next(records), config, version)
                if text is not None
                else {"model_version": version, "score": task_score([]), "result": []}
                for text in texts
            ]
            return {"results": results}

        return await answer(request, handle)

    @app.post("/webhook", summary="Label Studio: events (annotations, START_TRAINING), accepted at once", **docs)
    async def webhook(request: Request) -> Any:
        """Accepts Label Studio's events; starts no training (`START_TRAINING` is answered with why)."""

        async def handle(body: bytes) -> Dict[str, Any]:
            action, project = parse_webhook_body(body)
            if action == "START_TRAINING":
                LOGGER.info("Label Studio project %s asked to train: %s", _one_line(project or "(none)"), TRAINING_NOTE)
                return {"status": "ok", "action": action, "training": False, "detail": TRAINING_NOTE}
            return {"status": "ok", "action": action}

        return await answer(request, handle)

    return configs
