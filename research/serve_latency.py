"""Latency of one-sentence requests to ``serve`` while another client sends
requests of the maximum size: does a small request wait behind a large one?

For each server (the code of an older checkout, ``baseline``, first if given,
then this checkout's), :func:`run_serve_latency` starts ``python -m
spacy_spert serve MODEL`` in a subprocess (``PYTHONPATH`` and the working
directory set to that checkout's root, the package path checked) with
``--max-chars`` and ``--max-texts`` and every other option at its default,
and runs two clients against it for ``seconds``:

- the large client sends, one after the other, requests of ``max_texts``
  texts of up to ``max_chars`` characters each (sentences of ``texts``
  joined), the largest the server accepts;
- the small client starts a request of one sentence every ``interval``
  seconds (each in its own thread, whether or not the last one has been
  answered, so that the requests sample every moment of the large client's
  requests).

It records the small requests' latency (median, 95th percentile, largest)
and the large requests' (with the characters per second they were served
at, the cost of fairness), checks that every answer is a 200 with the
request's text, and writes RESULTS (JSON) and its tables (.md) with the
command, versions, machine and the 1-minute load average (the server and
both clients share the machine).

    git worktree add /tmp/serve-base 5c9deb9
    python -m research serve-latency training/demo/model-last --texts assets/demo/dev.json \\
        --baseline /tmp/serve-base --results results/serve-latency-cpu.json
"""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

from .records import machine_text, provenance, recorded_command, save_results
from .runs import CommandArg, python_module
from .serve_load import read_texts

HOST = "127.0.0.1"


def large_texts(sentences: List[str], max_chars: int, max_texts: int) -> List[str]:
    """``max_texts`` different texts of up to ``max_chars`` characters: the
    sentences joined, each text starting at another sentence, cut at the last
    space that fits.

    RETURNS (List[str]): The texts.
    """
    texts = []
    for k in range(max_texts):
        parts, size, i = [], 0, k * 7
        while size < max_chars:
            sentence = sentences[i % len(sentences)]
            parts.append(sentence)
            size += len(sentence) + 1
            i += 1
        text = " ".join(parts)
        texts.append(text[: text.rfind(" ", 0, max_chars + 1)] if len(text) > max_chars else text)
    return texts


def percentile(values: List[float], q: float) -> float:
    """The ``q`` quantile (0-1) of values, by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def post(port: int, body: Dict[str, Any], timeout: float = 600) -> Any:
    """POST /extract; the parsed answer. RAISES: RuntimeError unless 200."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/extract", json.dumps(body).encode("utf8"), {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"POST /extract answered {response.status}: {answer[:200]!r}")
    return json.loads(answer)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def package_path(root: Path) -> str:
    """The ``spacy_spert`` a subprocess imports with ``root`` as its path and
    working directory. RAISES: RuntimeError if it is not root's."""
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", "import spacy_spert; print(spacy_spert.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"python in {root} imports spacy_spert from {out}, not from {root}")
    return out


def git_commit(root: Path) -> str:
    """The checkout's commit, with "+changes" if its spacy_spert/ differs from it."""
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = result.stdout.strip() or "unknown"
    # git diff, not git status: it does not write the index
    changed = subprocess.run(["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "spacy_spert"]).returncode == 1
    return commit + "+changes" if changed else commit


def measure(
    root: Path,
    model: Path,
    sentences: List[str],
    max_chars: int,
    max_texts: int,
    seconds: float,
    interval: float,
    log_dir: Path,
) -> Dict[str, Any]:
    """Start the server of checkout ``root`` and run both clients against it
    (see the module docstring).

    RETURNS (Dict[str, Any]): The checkout, the small and large requests'
        latencies and the load average.
    """
    package = package_path(root)
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    limits: List[CommandArg] = ["--max-chars", max_chars, "--max-texts", max_texts]
    command = python_module("spacy_spert", "serve", Path(model).resolve(), "--host", HOST, "--port", port, *limits)
    with log.open("w") as log_file:
        server = subprocess.Popen(
            command, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                conn = http.client.HTTPConnection(HOST, port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        large = large_texts(sentences, max_chars, max_texts)
        post(port, {"text": sentences[0]})
        post(port, {"texts": large[:1]})  # warm-up
        out = run_clients(port, sentences, large, seconds, interval)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {
        "checkout": str(root),
        "commit": git_commit(root),
        "package": package,
        "server_command": " ".join(command[1:]),
        **out,
    }


def run_clients(port: int, sentences: List[str], large: List[str], seconds: float, interval: float) -> Dict[str, Any]:
    """Run the large and the small client for ``seconds``; their latencies."""
    stop = threading.Event()
    large_times: List[float] = []
    errors: List[str] = []
    load: List[float] = []

    def large_client() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                records = post(port, {"texts": large})
                if [r["text"] for r in records] != large:
                    raise RuntimeError("a large request was answered with other texts")
            except Exception as e:  # reported after the run
                errors.append(f"large: {e}")
                return
            large_times.append(time.perf_counter() - start)

    def small_request(text: str) -> float:
        start = time.perf_counter()
        record = post(port, {"text": text})
        if record["text"] != text:
            raise RuntimeError("a small request was answered with another text")
        return time.perf_counter() - start

    large_thread = threading.Thread(target=large_client, daemon=True)
    large_thread.start()
    time.sleep(1.0)  # the large client's first request is running
    futures = []
    with ThreadPoolExecutor(256) as pool:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            futures.append(pool.submit(small_request, sentences[i % len(sentences)]))
            if i % max(1, int(10 / interval)) == 0:
                load.append(os.getloadavg()[0])
            i += 1
            time.sleep(max(0.0, start + i * interval - time.monotonic()))
        small_times = []
        for future in futures:
            try:
                small_times.append(future.result())
            except Exception as e:
                errors.append(f"small: {e}")
    stop.set()
    large_thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    chars = sum(len(text) for text in large)
    return {
        "small": {
            "requests": len(small_times),
            "p50_s": round(percentile(small_times, 0.5), 3),
            "p95_s": round(percentile(small_times, 0.95), 3),
            "max_s": round(max(small_times), 3),
            "mean_s": round(statistics.mean(small_times), 3),
        },
        "large": {
            "requests": len(large_times),
            "texts_per_request": len(large),
            "chars_per_request": chars,
            "median_s": round(statistics.median(large_times), 3) if large_times else None,
            "chars_per_s": round(chars * len(large_times) / sum(large_times)) if large_times else None,
        },
        "load_average_1min": [round(x, 2) for x in load],
    }


def run_serve_latency(
    model: Path,
    texts: Path,
    results: Path,
    baseline: Optional[Path] = None,
    max_chars: int = 5000,
    max_texts: int = 8,
    seconds: float = 60,
    interval: float = 0.5,
) -> Dict[str, Any]:
    """Measure the small requests' latency against the server of ``baseline``
    (if given: "before") and of this checkout ("after"); write the results.

    model (Path): The trained pipeline the servers load.
    texts (Path): A SpERT JSON or JSONL file whose sentences the requests send.
    results (Path): The results JSON file (the tables go to the .md next to it).
    baseline (Optional[Path]): The root of an older checkout to measure first.
    max_chars (int): The server's --max-chars, the large texts' length.
    max_texts (int): The server's --max-texts, the large requests' texts.
    seconds (float): How long the small client sends, per server.
    interval (float): Seconds between the small client's requests.
    RETURNS (Dict[str, Any]): The results, as written.
    """
    sentences = read_texts(Path(texts))
    if not sentences:
        raise ValueError(f"{texts}: no texts")
    here = Path(__file__).resolve().parents[1]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, root in ([("before", Path(baseline))] if baseline is not None else []) + [("after", here)]:
            runs[name] = measure(root, model, sentences, max_chars, max_texts, seconds, interval, Path(tmp))
    out: Dict[str, Any] = {
        "model": str(model),
        "texts": str(texts),
        "max_chars": max_chars,
        "max_texts": max_texts,
        "seconds": seconds,
        "interval_s": interval,
        "runs": runs,
        "command": recorded_command(),
    }
    if "before" in runs:
        out["p95_before_over_after"] = round(runs["before"]["small"]["p95_s"] / runs["after"]["small"]["p95_s"], 2)
    return save_results(Path(results), out, markdown)


def markdown(results: Dict[str, Any]) -> str:
    """The tables of a serve-latency results file.

    results (Dict[str, Any]): As written by :func:`run_serve_latency`.
    RETURNS (str): Markdown.
    """
    runs = results["runs"]
    any_run = next(iter(runs.values()))
    lines = [
        f"One-sentence requests (one every {results['interval_s']} s for {results['seconds']} s, sentences of "
        f"{results['texts']}) to `serve` of {results['model']} while another client sends, one after the other, "
        f"requests of {any_run['large']['texts_per_request']} texts of up to {results['max_chars']} characters "
        f"({any_run['large']['chars_per_request']} characters; the server's --max-chars {results['max_chars']}, "
        f"--max-texts {results['max_texts']}, other options at their defaults).",
        "",
        "| server | small: requests | p50 s | p95 s | max s | large: requests | median s | characters/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        s, g = run["small"], run["large"]
        lines.append(
            f"| {name} ({run['commit']}) | {s['requests']} | {s['p50_s']} | {s['p95_s']} | {s['max_s']} | "
            f"{g['requests']} | {g['median_s']} | {g['chars_per_s']} |"
        )
    if "p95_before_over_after" in results:
        lines += ["", f"p95 latency of the small requests, before / after: **{results['p95_before_over_after']}x**."]
    load = "; ".join(f"{name} {run['load_average_1min']}" for name, run in runs.items())
    lines += [
        "",
        "Servers: "
        + "; ".join(
            f"{name}: `{run['server_command']}` from {run['checkout']} (spacy_spert from {run['package']})"
            for name, run in runs.items()
        )
        + ".",
        "",
        provenance(
            results,
            machine_text(results["machine"], ("cpus", "platform", "device")),
            f"1-minute load average during the runs: {load}",
        ),
        "",
    ]
    return "\n".join(lines)
