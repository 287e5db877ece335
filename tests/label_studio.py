"""The real Label Studio (PyPI ``label-studio``, in its own virtual environment:
``make labelstudio``) for tests/apps/test_label_studio_app.py and the README's
screenshot (tests/make_label_studio_screenshot.py): start it offline on
127.0.0.1 with a temporary data folder, call its REST API, start ``serve`` as
its ML backend, and check the predictions it stores (Label Studio does not
validate them). The settings are those of /work/shared/notes/label-studio.md
(checked on Label Studio 1.23.2)."""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

REPO = Path(__file__).resolve().parents[1]
# The executable; default: the one `make labelstudio` installs.
BIN_ENV = "LABEL_STUDIO_BIN"
DEFAULT_BIN = REPO / ".venv-labelstudio" / "bin" / "label-studio"
HOST = "127.0.0.1"

# No calls out (analytics, error reports, the version check) and a backend on
# localhost allowed: without the last two, Label Studio refuses to connect to
# 127.0.0.1 (SSRF protection), or saves the backend but answers 403.
OFFLINE_ENV = {
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "LATEST_VERSION_CHECK": "false",
    "ML_BLOCK_LOCAL_IP": "false",
    "SSRF_PROTECTION_ENABLED": "false",
}


def executable() -> Optional[Path]:
    """The ``label-studio`` executable: ``$LABEL_STUDIO_BIN`` if set (even if
    it does not exist, so that a wrong setting fails rather than skips), else
    .venv-labelstudio/bin/label-studio if there.

    RETURNS (Optional[Path]): The executable, or None.
    """
    env = os.environ.get(BIN_ENV)
    if env:
        return Path(env)
    return DEFAULT_BIN if DEFAULT_BIN.exists() else None


def missing() -> Optional[str]:
    """Why the Label Studio tests cannot run here, or None if they can."""
    if executable() is None:
        return (
            f"Label Studio is not installed: `make labelstudio` installs it into .venv-labelstudio (or set {BIN_ENV})"
        )
    return None


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop(process: "subprocess.Popen[bytes]", timeout: float = 20) -> None:
    """Stop a process started with ``start_new_session=True`` and all its
    children (its process group): SIGTERM, then SIGKILL after ``timeout`` s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
        except ProcessLookupError:
            pass
    # Children that outlive the leader (a dev server's worker) are in the group too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class ApiError(Exception):
    pass


def http(
    method: str, url: str, body: Any = None, headers: Optional[Dict[str, str]] = None, timeout: float = 120
) -> Tuple[int, bytes]:
    """One HTTP request. body: JSON-able (sent as JSON) or None.

    RETURNS (Tuple[int, bytes]): The status and the body (also for 4xx/5xx).
    """
    data = None if body is None else json.dumps(body).encode("utf8")
    all_headers = {"Accept": "application/json", **(headers or {})}
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass
class LabelStudio:
    """A running Label Studio: its URL, its user and the user's API token."""

    url: str
    username: str
    password: str
    token: str
    log: Path

    def api(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        """Call the REST API with the token; RETURNS the answer's JSON (None if empty).
        RAISES ApiError on a status of 300 or more, with the answer."""
        status, data = http(method, self.url + path, body, {"Authorization": f"Token {self.token}"}, timeout)
        if status >= 300:
            raise ApiError(f"{method} {path}: {status} {data[:2000].decode('utf8', 'replace')}")
        return json.loads(data) if data.strip() else None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text("utf8", "replace").splitlines()[-n:])


def wait_for(check, timeout: float, what: str, process: "Optional[subprocess.Popen[bytes]]" = None, log=None):
    """Call ``check()`` until it returns something truthy; RETURNS that.
    RAISES RuntimeError after ``timeout`` seconds or when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}\n{log() if log else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s\n{log() if log else ''}")
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=5)[0] == 200
    except OSError:
        return False


@contextmanager
def running_label_studio(data_dir: Path, timeout: float = 300) -> Iterator[LabelStudio]:
    """Start Label Studio offline on 127.0.0.1 (a free port), with its data
    (SQLite, uploads) in ``data_dir`` and a user with a legacy API token made
    at start; stop it, with its children, at the end.

    data_dir (Path): An empty folder for its data and its log.
    timeout (float): Seconds to wait for it to answer ``GET /health/`` (a
        fresh data folder takes ~30 s of migrations, more on a busy machine).
    YIELDS (LabelStudio): Its URL, user, password and token.
    """
    exe = executable()
    if exe is None or not exe.exists():
        raise RuntimeError(f"no Label Studio executable at {exe} ({BIN_ENV}); `make labelstudio` installs it")
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "label-studio.log"
    username, password, token = "spert@example.com", secrets.token_urlsafe(12), secrets.token_hex(20)
    port = free_port()
    env = {**os.environ, **OFFLINE_ENV, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir / "data")}
    # --host is the public URL; --internal-host the address it binds to.
    command = [
        str(exe),
        "start",
        "--no-browser",
        "--internal-host",
        HOST,
        "--port",
        str(port),
        "--username",
        username,
        "--password",
        password,
        "--user-token",
        token,
        "--enable-legacy-api-token",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:

        def tail() -> str:
            return "\n".join(log.read_text("utf8", "replace").splitlines()[-40:])

        # If the port was taken meanwhile, it silently takes another: read the one it says.
        def started() -> Optional[str]:
            found = re.search(r"Starting development server at (http://\S+?)/?\s", log.read_text("utf8", "replace"))
            return found.group(1) if found else None

        url = wait_for(started, timeout, "Label Studio did not start", process, tail)
        wait_for(lambda: _answers(url + "/health/"), timeout, "Label Studio did not answer /health/", process, tail)
        yield LabelStudio(url, username, password, token, log)
    finally:
        stop(process)


@contextmanager
def running_serve(
    model: Path, args: Sequence[str] = (), timeout: float = 180, log: Optional[Path] = None
) -> Iterator[str]:
    """Start ``python -m spacy_spert serve MODEL`` on 127.0.0.1 (a free port)
    in a subprocess; stop it at the end.

    model (Path): The pipeline. args (Sequence[str]): More options of serve.
    timeout (float): Seconds to wait for ``GET /health``.
    log (Optional[Path]): Where its output goes (default: discarded).
    YIELDS (str): Its URL.
    """
    port = free_port()
    command = [sys.executable, "-m", "spacy_spert", "serve", str(model), "--host", HOST, "--port", str(port), *args]
    url = f"http://{HOST}:{port}"
    with open(log, "wb") if log else nullcontext(subprocess.DEVNULL) as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    try:

        def tail() -> str:
            return log.read_text("utf8", "replace")[-4000:] if log else ""

        wait_for(lambda: _answers(url + "/health"), timeout, "serve did not start", process, tail)
        yield url
    finally:
        stop(process)


def label_config(entities: Iterable[str], relations: Iterable[str], labels: str = "label", text: str = "text") -> str:
    """A labeling config for entities and labelled relations on a text.

    entities (Iterable[str]): The entity labels. relations (Iterable[str]): The relation labels.
    labels (str): The ``name`` of ``<Labels>`` (a prediction's ``from_name``).
    text (str): The ``name`` of ``<Text>`` (``to_name``), whose value is ``$text``.
    RETURNS (str): The XML.
    """
    lines = ["<View>", "  <Relations>"]
    lines += [f"    <Relation value={quoteattr(label)}/>" for label in relations]
    lines += ["  </Relations>", f"  <Labels name={quoteattr(labels)} toName={quoteattr(text)}>"]
    lines += [f"    <Label value={quoteattr(label)}/>" for label in entities]
    lines += ["  </Labels>", f'  <Text name={quoteattr(text)} value="$text"/>', "</View>"]
    return "\n".join(lines)


def check_result(
    text: str,
    result: List[Dict[str, Any]],
    entities: Iterable[str],
    relations: Iterable[str],
    labels: str = "label",
    to_name: str = "text",
) -> List[str]:
    """What is wrong with a prediction's ``result`` for a task's text: region
    ids not unique, labels not in the config, offsets (code points) that do not
    match the text, names not the config's, relations that do not point at
    regions of the result, directions or scores out of range.

    RETURNS (List[str]): The problems; empty if none.
    """
    problems = []
    entities, relations = set(entities), set(relations)
    ids: List[Any] = []
    for n, item in enumerate(result):
        where = f"result[{n}]"
        kind = item.get("type")
        if kind == "labels":
            ids.append(item.get("id"))
            if not isinstance(item.get("id"), str) or not item["id"]:
                problems.append(f"{where}: region id {item.get('id')!r}")
            if (item.get("from_name"), item.get("to_name")) != (labels, to_name):
                problems.append(f"{where}: from_name/to_name {item.get('from_name')!r}/{item.get('to_name')!r}")
            value = item.get("value") or {}
            start, end = value.get("start"), value.get("end")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                problems.append(f"{where}: offsets {start!r}..{end!r} outside the text ({len(text)} code points)")
            elif value.get("text") != text[start:end]:
                problems.append(f"{where}: value.text {value.get('text')!r} != text[{start}:{end}] {text[start:end]!r}")
            if not value.get("labels") or not set(value["labels"]) <= entities:
                problems.append(f"{where}: labels {value.get('labels')!r} not in the config's {sorted(entities)}")
            score = item.get("score")
            if score is not None and not (isinstance(score, (int, float)) and 0 <= score <= 1):
                problems.append(f"{where}: score {score!r}")
        elif kind == "relation":
            if not item.get("labels") or not set(item["labels"]) <= relations:
                problems.append(f"{where}: labels {item.get('labels')!r} not in the config's {sorted(relations)}")
            if item.get("direction") not in ("right", "left", "bi"):
                problems.append(f"{where}: direction {item.get('direction')!r}")
        else:
            problems.append(f"{where}: type {kind!r}")
    if len(set(ids)) != len(ids):
        problems.append(f"region ids not unique: {ids}")
    for n, item in enumerate(result):
        if item.get("type") == "relation":
            for end_ in ("from_id", "to_id"):
                if item.get(end_) not in ids:
                    problems.append(f"result[{n}]: {end_} {item.get(end_)!r} is no region of this task")
            if item.get("from_id") == item.get("to_id"):
                problems.append(f"result[{n}]: a relation from a region to itself")
    return problems


def _regions(result: List[Dict[str, Any]]) -> Dict[Any, tuple]:
    return {
        item["id"]: (
            item["value"]["start"],
            item["value"]["end"],
            item["value"]["text"],
            tuple(item["value"]["labels"]),
        )
        for item in result
        if item.get("type") == "labels"
    }


def normalized(result: List[Dict[str, Any]]) -> Tuple[List[tuple], List[tuple]]:
    """A result without its region ids and scores, to compare two results: the
    regions as (start, end, text, labels) and the relations as (head region,
    tail region, labels, direction), each sorted."""
    regions = _regions(result)
    links = [
        (regions.get(item["from_id"]), regions.get(item["to_id"]), tuple(item.get("labels", ())), item.get("direction"))
        for item in result
        if item.get("type") == "relation"
    ]
    return sorted(regions.values()), sorted(links, key=repr)


def scores(result: List[Dict[str, Any]]) -> Dict[tuple, Any]:
    """The scores of a result's regions and relations, by what they are (as in :func:`normalized`)."""
    regions = _regions(result)
    found: Dict[tuple, Any] = {
        ("region", *regions[item["id"]]): item.get("score") for item in result if item.get("type") == "labels"
    }
    for item in result:
        if item.get("type") == "relation":
            key = ("relation", regions.get(item["from_id"]), regions.get(item["to_id"]), tuple(item.get("labels", ())))
            found[key] = item.get("score")
    return found
