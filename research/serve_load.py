"""Requests per second of a running ``serve``: ``POST /extract`` with one text
per request, from ``concurrency`` client threads with keep-alive connections.

    python -m spacy_spert serve MODEL --port 8000 &
    python -m research.serve_load http://127.0.0.1:8000 \\
        --texts assets/demo/dev.json --requests 300 --concurrency 1,4,16,64

The texts: the sentences of a SpERT JSON file (tokens joined by spaces) or the
``text`` fields of a JSONL file, cycled. For each concurrency, a warm-up of
``concurrency`` requests, then ``requests`` requests; requests/s is their
number over the wall time from the first to the last answer, with the median
and 95th percentile latency. Every answer must be 200 and its record's text
the request's text (else the run fails). Run the client on the same machine
as the server only when that is what you mean to measure: both share the
CPU.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import urlsplit


def read_texts(path: Path) -> List[str]:
    """The texts of a SpERT JSON file or of a JSONL file with a ``text`` field."""
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.read_text(encoding="utf8").splitlines() if line.strip()]
    return [" ".join(record["tokens"]) for record in json.loads(path.read_text(encoding="utf8"))]


def run_load(url: str, texts: List[str], n_requests: int, concurrency: int, timeout: float = 300) -> Dict[str, Any]:
    """Send ``n_requests`` requests (one text each, texts cycled) from
    ``concurrency`` threads and time them.

    RETURNS (Dict[str, Any]): concurrency, requests, seconds, requests_per_s,
        latency_p50_ms, latency_p95_ms.
    RAISES: RuntimeError if an answer is not 200 or not its text's record.
    """
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url}: no host name (e.g. http://127.0.0.1:8000)")
    host = parts.hostname
    lock = threading.Lock()
    next_index = [0]
    latencies: List[float] = []
    errors: List[str] = []

    def worker(limit: int) -> None:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= limit or errors:
                        return
                    next_index[0] += 1
                text = texts[i % len(texts)]
                body = json.dumps({"text": text}).encode("utf8")
                start = time.perf_counter()
                conn.request("POST", "/extract", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200 or json.loads(answer)["text"] != text:
                    with lock:
                        errors.append(f"request {i}: status {response.status}: {answer[:200]!r}")
                    return
                with lock:
                    latencies.append(elapsed)
        finally:
            conn.close()

    def run(limit: int) -> float:
        next_index[0] = 0
        threads = [threading.Thread(target=worker, args=(limit,)) for _ in range(concurrency)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    run(concurrency)  # warm-up
    latencies.clear()
    seconds = run(n_requests)
    if errors:
        raise RuntimeError(errors[0])
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": n_requests,
        "seconds": round(seconds, 3),
        "requests_per_s": round(n_requests / seconds, 2),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
        "latency_p95_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", default="1,4,16,64")
    args = parser.parse_args()
    texts = read_texts(args.texts)
    print("| concurrency | requests | seconds | requests/s | latency p50 (ms) | latency p95 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c in [int(x) for x in args.concurrency.split(",")]:
        r = run_load(args.url, texts, args.requests, c)
        print(
            f"| {c} | {r['requests']} | {r['seconds']} | {r['requests_per_s']} | {r['latency_p50_ms']} | "
            f"{r['latency_p95_ms']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
