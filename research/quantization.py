"""Speed and F1 of a pipeline with its encoder quantized to int8, against the
same pipeline in float32, in one process on the same docs.

Two copies of the pipeline are loaded; one is quantized
(:func:`spacy_spert.transformer.quantize.quantize`). Inference is timed in turn (float,
int8, float, int8, ...) ``repeats`` times per batch size with ``nlp.pipe``
over the test texts; docs/s is from the median. Both are scored on the test
corpus with ``nlp.evaluate`` (NER micro F1, relations strict micro F1, ...),
and ΔF1 = int8 - float32 in points.

Run: ``python -m research.quantization MODEL TEST.spacy
RESULTS.json [--batch-sizes 1,8,64] [--repeats 3] [--n-docs N] [--threads T]``; the tables
go next to RESULTS (.md).
"""

import argparse
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .benchmark import metrics_from_scores
from .measure import run_pipe
from .records import provenance, recorded_command, save_results


def run_quantization(
    model: Path,
    test: Path,
    results_path: Path,
    *,
    batch_sizes: Sequence[int] = (1, 8, 64),
    repeats: int = 3,
    n_docs: Optional[int] = None,
    threads: Optional[int] = None,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Measure (see the module docstring) and write the results.

    model (Path): The trained pipeline. test (Path): The test corpus (.spacy).
    results_path (Path): The JSON results file (tables in .md next to it).
    batch_sizes (Sequence[int]): Batch sizes to time. repeats (int): Alternating runs.
    n_docs (Optional[int]): Time only the first n_docs texts (all are scored).
    threads (Optional[int]): torch's CPU threads (None: torch's default).
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    import spacy
    import torch
    from spacy.training import Corpus

    from spacy_spert.transformer.quantize import quantize

    if threads is not None:
        torch.set_num_threads(threads)

    pipelines = {"float32": spacy.load(model), "int8": quantize(spacy.load(model))}
    examples = list(Corpus(str(test))(pipelines["float32"]))
    texts = [eg.reference.text for eg in examples][:n_docs]
    speed: Dict[str, Dict[str, float]] = {}
    for batch_size in batch_sizes:
        times: Dict[str, List[float]] = {name: [] for name in pipelines}
        for nlp in pipelines.values():  # warm-up
            run_pipe(nlp, texts[: 2 * batch_size], batch_size)
        for _ in range(repeats):
            for name, nlp in pipelines.items():
                times[name].append(run_pipe(nlp, texts, batch_size))
        row = {f"{name}_docs_per_s": round(len(texts) / statistics.median(t), 1) for name, t in times.items()}
        row["speedup"] = round(row["int8_docs_per_s"] / row["float32_docs_per_s"], 2)
        speed[str(batch_size)] = row
        print(f"batch {batch_size}: {row}", flush=True)
    metrics = {name: metrics_from_scores(nlp.evaluate(examples)) for name, nlp in pipelines.items()}
    delta = {
        key: round(metrics["int8"][key]["f"] - metrics["float32"][key]["f"], 2)
        for key in metrics["float32"]
        if isinstance(metrics["float32"][key], dict) and "f" in metrics["float32"][key]
    }
    results = {
        "model": str(model),
        "test": str(test),
        "command": recorded_command(command),
        "n_docs_timed": len(texts),
        "n_docs_scored": len(examples),
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "speed": speed,
        "metrics": {name: {k: v for k, v in m.items() if not k.endswith("_per_type")} for name, m in metrics.items()},
        "delta_f1": delta,
    }
    return save_results(results_path, results, markdown)


def markdown(results: Dict[str, Any]) -> str:
    """The tables of a quantization results file.

    results (Dict[str, Any]): As written by :func:`run_quantization`.
    RETURNS (str): Markdown.
    """
    lines = [
        f"Inference on {results['n_docs_timed']} docs, median of {results['repeats']} alternating runs, "
        f"{results['torch_threads']} torch thread(s):",
        "",
        "| batch size | float32 docs/s | int8 docs/s | speed-up |",
        "|---|---|---|---|",
    ]
    for bs, r in results["speed"].items():
        lines.append(f"| {bs} | {r['float32_docs_per_s']} | {r['int8_docs_per_s']} | {r['speedup']}x |")
    lines += [
        "",
        f"F1 on {results['n_docs_scored']} docs:",
        "",
        "| metric | float32 F1 | int8 F1 | ΔF1 (points) |",
        "|---|---|---|---|",
    ]
    for key, d in results["delta_f1"].items():
        lines.append(
            f"| {key} | {results['metrics']['float32'][key]['f']} | {results['metrics']['int8'][key]['f']} | {d:+.2f} |"
        )
    lines += ["", provenance(results, f"device: {results['machine']['device']}"), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="int8 against float32: docs/s and F1 in one process.")
    parser.add_argument("model", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-docs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    run_quantization(
        args.model,
        args.test,
        args.results,
        repeats=args.repeats,
        n_docs=args.n_docs,
        threads=args.threads,
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
    )
