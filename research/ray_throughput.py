"""Docs/s of ``predict --engine ray`` against single-process ``predict``.

The docs: the texts of a corpus, repeated to ``n_docs`` and shuffled with
``seed`` (:func:`~research.throughput.benchmark_texts`), in a
JSONL file that both engines read.

In each of ``repeats`` rounds, in turn: ``predict`` in this process (the
pipeline loaded before the clock starts, torch's default threads), then
:func:`~spacy_spert.apps.predict_ray.predict_ray` with each number of actors in
``actors`` (one CPU and one torch thread per actor) on a local Ray cluster of
``num_cpus`` CPUs started once before the rounds (its start is timed
separately). A Ray run's time includes building the dataset, starting the
actors and loading the pipeline in each, which a fixed cost measured apart:
the time of a Ray run over ``startup_docs`` docs. docs/s is the number of
docs over the median time; "overhead" compares each Ray run with ``predict``.

Then the outputs are compared with ``predict``'s (the same entities and
relations, scores within ``tolerance``): the engines batch docs differently,
so scores may differ in the last float digits.

:func:`run_ray_throughput` writes RESULTS (JSON) and its tables (.md) with
the command, versions, seed and machine.
"""

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy_spert.apps.predict import DEFAULT_BATCH_SIZE, predict

from .records import machine_text, provenance, recorded_command, save_results
from .throughput import benchmark_texts, compare, encoder_name


def run_ray_throughput(
    model: Path,
    corpus: Path,
    results_path: Path,
    *,
    n_docs: int = 2000,
    seed: int = 0,
    actors: Sequence[int] = (1, 2),
    num_cpus: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rows_per_task: int = 256,
    repeats: int = 2,
    startup_docs: int = 8,
    tolerance: float = 1e-4,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Measure (see the module docstring) and write the results file and its tables.

    model (Path): The trained pipeline (a directory). corpus (Path): ``.spacy``
        file whose texts are used.
    results_path (Path): The JSON results file; the tables go next to it (.md).
    n_docs (int): Docs per run. seed (int): The shuffle's seed.
    actors (Sequence[int]): Numbers of Ray actors to time.
    num_cpus (Optional[int]): CPUs of the local Ray cluster started here
        (default: all); a cluster that ``ray.init`` connected to is used as it is.
    batch_size (int): ``nlp.pipe`` batch size of both engines.
    rows_per_task (int): Docs per actor task.
    repeats (int): Rounds; docs/s uses the median time.
    startup_docs (int): Docs of the run that measures the fixed cost.
    tolerance (float): The largest score difference that counts as the same.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    import logging

    import ray
    import spacy
    from spacy import util

    from spacy_spert.apps.predict_ray import predict_ray

    util.fix_random_seed(seed)
    texts = benchmark_texts(corpus, n_docs, seed)
    nlp = spacy.load(model)
    num_cpus = num_cpus or os.cpu_count()
    load_average = [os.getloadavg()[0]]
    local: List[float] = []
    timed: Dict[int, List[float]] = {n: [] for n in actors}
    startup: Dict[int, float] = {}
    start = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    else:
        num_cpus = int(ray.cluster_resources().get("CPU", 0))
    ray_init_s = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            input_path = tmp / "input.jsonl"
            input_path.write_text(
                "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf8"
            )
            small = tmp / "small.jsonl"
            small.write_text(
                "".join(input_path.read_text(encoding="utf8").splitlines(True)[:startup_docs]), encoding="utf8"
            )
            for n in actors:
                ray_report = predict_ray(
                    model,
                    small,
                    tmp / "small-out.jsonl",
                    num_actors=n,
                    batch_size=batch_size,
                    rows_per_task=rows_per_task,
                    progress=False,
                )
                startup[n] = ray_report.seconds
                print(f"ray, {n} actors, {startup_docs} docs: {ray_report.seconds:.1f} s", flush=True)
            for r in range(repeats):
                report = predict(nlp, input_path, tmp / "local.jsonl", batch_size=batch_size, progress=False)
                local.append(report.seconds)
                print(f"round {r + 1}: predict: {len(texts) / local[-1]:.1f} docs/s", flush=True)
                for n in actors:
                    ray_report = predict_ray(
                        model,
                        input_path,
                        tmp / f"ray-{n}.jsonl",
                        num_actors=n,
                        batch_size=batch_size,
                        rows_per_task=rows_per_task,
                        progress=False,
                    )
                    timed[n].append(ray_report.seconds)
                    print(f"round {r + 1}: ray, {n} actors: {len(texts) / timed[n][-1]:.1f} docs/s", flush=True)
                load_average.append(os.getloadavg()[0])
            want = [json.loads(line) for line in (tmp / "local.jsonl").read_text(encoding="utf8").splitlines()]
            outputs = {
                str(n): compare(
                    want,
                    [json.loads(line) for line in (tmp / f"ray-{n}.jsonl").read_text(encoding="utf8").splitlines()],
                    tolerance,
                )
                for n in actors
            }
            same_bytes = {
                str(n): (tmp / f"ray-{n}.jsonl").read_bytes() == (tmp / "local.jsonl").read_bytes() for n in actors
            }
    finally:
        if started:
            ray.shutdown()
    local_docs_per_s = round(len(texts) / statistics.median(local), 1)
    ray_results = {}
    for n in actors:
        seconds = statistics.median(timed[n])
        ray_results[str(n)] = {
            "docs_per_s": round(len(texts) / seconds, 1),
            "seconds": [round(t, 4) for t in timed[n]],
            "startup_seconds": round(startup[n], 2),
            "docs_per_s_after_startup": round(len(texts) / max(seconds - startup[n], 1e-9), 1),
            "overhead_vs_predict": round(seconds / statistics.median(local) - 1, 3),
            "output": outputs[str(n)],
            "same_bytes_as_predict": same_bytes[str(n)],
        }
    results: Dict[str, Any] = {
        "model": str(model),
        "transformer": encoder_name(nlp),
        "corpus": str(corpus),
        "command": recorded_command(command),
        "seed": seed,
        "n_docs": len(texts),
        "repeats": repeats,
        "batch_size": batch_size,
        "rows_per_task": rows_per_task,
        "ray_num_cpus": num_cpus,
        "ray_init_seconds": round(ray_init_s, 2),
        "startup_docs": startup_docs,
        "predict": {"docs_per_s": local_docs_per_s, "seconds": [round(t, 4) for t in local]},
        "ray": ray_results,
        "load_average_1min": [round(x, 2) for x in load_average],
    }
    return save_results(results_path, results, markdown, versions={"ray": ray.__version__})


def markdown(results: Dict[str, Any]) -> str:
    """The tables of a Ray throughput results file.

    results (Dict[str, Any]): As written by :func:`run_ray_throughput`.
    RETURNS (str): Markdown.
    """
    lines = [
        f"{results['n_docs']} docs from {results['corpus']}, shuffled with seed {results['seed']}; model "
        f"{results['model']} ({results['transformer']}); JSONL in, JSONL out; median of {results['repeats']} "
        f"alternating rounds; local Ray cluster of {results['ray_num_cpus']} CPUs (started in "
        f"{results['ray_init_seconds']} s, not counted).",
        "",
        "| run | docs/s | time (s) | fixed cost (s) | docs/s after the fixed cost | time against predict | "
        "same output |",
        "|---|---|---|---|---|---|---|",
        f"| predict (1 process, {results['machine']['torch_threads']} torch threads) | "
        f"{results['predict']['docs_per_s']} | {', '.join(map(str, results['predict']['seconds']))} | - | - | - "
        "| - |",
    ]
    for n, r in results["ray"].items():
        out = r["output"]
        same = "yes" if out["same_output"] else f"NO ({out['n_mismatched_docs']} docs)"
        same += " (identical bytes)" if r["same_bytes_as_predict"] else f" (scores within {out['tolerance']:g})"
        lines.append(
            f"| predict --engine ray, {n} actors (1 CPU each) | {r['docs_per_s']} | "
            f"{', '.join(map(str, r['seconds']))} | {r['startup_seconds']} | {r['docs_per_s_after_startup']} "
            f"| {r['overhead_vs_predict']:+.0%} | {same} |"
        )
    lines += [
        "",
        f"Fixed cost: a Ray run over {results['startup_docs']} docs (dataset planning, actor start, "
        "pipeline load in each actor, reading and writing).",
        "",
        provenance(results, machine_text(results["machine"], ("cpus", "platform"), results["load_average_1min"])),
        "",
    ]
    return "\n".join(lines)
