"""Speed and memory of a trained SpERT pipeline against its bare transformer.

    python scripts/speed.py MODEL --test TEST.spacy --train TRAIN.spacy
        --results RESULTS.json [--batch-sizes 1,8,64] [--repeats 5]
        [--train-steps 0] [--lengths 100,300,1000,3000,10000,20000]
        [--plot RESULTS.png] [--gpu-id -1] [--doc-windows]

All in one run, on the same docs, so that the ratios hold while the machine's
speed drifts:

1. Inference on the TEST texts for each batch size: docs/s and wordpieces/s
   of the full pipeline and of the transformer alone (``nlp.select_pipes``),
   timed in turn (full, bare, full, bare, ...) --repeats times; the head's
   share is 1 - bare time / full time, the median over the repeats. As the
   difference of two noisy times it can even come out negative, so the spert
   component is also timed alone on the docs the transformer encoded:
   direct head share = spert time / (transformer time + spert time).
2. Training on the TRAIN examples as ``spacy train`` steps (``nlp.update``
   with the config's dropout, then ``finish_update`` of every component with
   the config's optimizer), --train-steps batches of the config's batch size
   (0: one epoch). Before each step the transformer alone runs its forward
   and backward pass on the same batch. A step splits into: the transformer's
   forward and backward; the spert head (sampling, pooling, classifiers,
   losses and their backward: update time - transformer time); and the
   optimizer step (all weights, nearly all the transformer's). Seconds per
   epoch = the mean step time x steps per epoch (no evaluation).
3. Time and peak memory against document length: raw text made of the TEST
   sentences, without sentence boundaries, cut to each length in --lengths
   tokens. Each length runs in a fresh process, once for the pipeline and
   once for the transformer alone; the table gives seconds (best of
   --repeats-long), the spert component alone on the encoded doc, tokens/s, the
   resident memory after loading and its peak during the run (Linux resets the
   peak after loading, through /proc/self/clear_refs).

Unless --doc-windows is given, the transformer encodes docs with
``spacy-spert.sentence_windows.v1`` (128 tokens, stride 96), whatever the
MODEL's config says, so that docs of any length fit; for sentence-level test
docs of up to 128 tokens this is one window per doc, as ``doc_spans``.

Writes RESULTS (JSON), RESULTS with .md (tables) and, with --plot, a PNG of
time and memory against length. Records the command, versions and machine.
"""
import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy
import spacy
from spacy import util
from spacy.training import Corpus
from thinc.api import set_dropout_rate

import spacy_spert
from benchmark import package_versions  # scripts/benchmark.py

SENTENCE_WINDOWS = {"@span_getters": "spacy-spert.sentence_windows.v1", "max_tokens": 128, "stride": 96}


def load(model: Path, doc_windows: bool, gpu_id: int):
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    overrides = {} if doc_windows else {"components.transformer.model.get_spans": SENTENCE_WINDOWS}
    return spacy.load(model, config=overrides)


def sync(gpu_id: int) -> None:
    if gpu_id >= 0:
        import torch

        torch.cuda.synchronize()


def n_wordpieces(docs) -> int:
    """Wordpieces the transformer encoded, [CLS] and [SEP] included, padding not."""
    return int(sum(int(numpy.asarray(doc._.trf_data.wordpieces.lengths).sum()) for doc in docs))


def run_pipe(nlp, texts: List[str], batch_size: int, gpu_id: int) -> float:
    start = time.perf_counter()
    for _ in nlp.pipe(texts, batch_size=batch_size):
        pass
    sync(gpu_id)
    return time.perf_counter() - start


def run_head(nlp, docs, batch_size: int, gpu_id: int) -> float:
    """Seconds of the spert components alone on docs the transformer encoded."""
    start = time.perf_counter()
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == "spert":
            for _ in nlp.get_pipe(name).pipe(docs, batch_size=batch_size):
                pass
    sync(gpu_id)
    return time.perf_counter() - start


def inference(nlp, texts: List[str], batch_sizes: List[int], repeats: int, gpu_id: int) -> Dict[str, Any]:
    wordpieces = n_wordpieces(nlp.pipe(texts, batch_size=64))
    rows = {}
    for batch_size in batch_sizes:
        full, bare, head = [], [], []
        run_pipe(nlp, texts[: 2 * batch_size], batch_size, gpu_id)  # warm-up
        for _ in range(repeats):
            full.append(run_pipe(nlp, texts, batch_size, gpu_id))
            with nlp.select_pipes(enable=["transformer"]):
                bare.append(run_pipe(nlp, texts, batch_size, gpu_id))
                docs = list(nlp.pipe(texts, batch_size=batch_size))
            head.append(run_head(nlp, docs, batch_size, gpu_id))
        t_full, t_bare, t_head = statistics.median(full), statistics.median(bare), statistics.median(head)
        rows[str(batch_size)] = {
            "pipeline_docs_per_s": round(len(texts) / t_full, 1),
            "transformer_docs_per_s": round(len(texts) / t_bare, 1),
            "pipeline_wordpieces_per_s": round(wordpieces / t_full),
            "transformer_wordpieces_per_s": round(wordpieces / t_bare),
            "head_share": round(statistics.median(1 - b / f for f, b in zip(full, bare)), 3),
            "head_share_min_max": [round(min(1 - b / f for f, b in zip(full, bare)), 3),
                                   round(max(1 - b / f for f, b in zip(full, bare)), 3)],
            "head_alone_seconds": round(t_head, 3),
            "head_share_direct": round(t_head / (t_bare + t_head), 3),
        }
        print(f"batch {batch_size}: {rows[str(batch_size)]}", flush=True)
    return {"n_docs": len(texts), "n_wordpieces": wordpieces, "repeats": repeats, "by_batch_size": rows}


def transformer_step(trf, docs) -> None:
    """The transformer's own forward and backward pass on a batch, with a
    gradient for last_hidden_state as the spert listener sends it."""
    outputs, backprop = trf.model.begin_update(docs)
    d_tensors = []
    for data in outputs.doc_data:
        lhs = data.model_output.last_hidden_state
        d_tensors.append([trf.model.ops.xp.full(lhs.shape, 1e-6, dtype="float32")])
    backprop(outputs.unsplit_by_doc(d_tensors))


def training(nlp, examples, n_steps: int, gpu_id: int) -> Dict[str, Any]:
    T = util.registry.resolve({"t": nlp.config["training"]}, validate=False)["t"]
    batches = list(T["batcher"](examples))
    steps_per_epoch = len(batches)
    batches = batches[:n_steps] if n_steps > 0 else batches
    optimizer = T["optimizer"]
    trf = nlp.get_pipe("transformer")
    update, trf_fb, opt = [], [], []
    warmup = min(3, len(batches) - 1)  # the first steps warm up (allocator, caches)
    for i, batch in enumerate(batches):
        docs = [eg.predicted for eg in batch]
        set_dropout_rate(trf.model, T["dropout"])
        sync(gpu_id)
        t0 = time.perf_counter()
        transformer_step(trf, docs)
        sync(gpu_id)
        t1 = time.perf_counter()
        nlp.update(batch, drop=T["dropout"], sgd=False, losses={})
        sync(gpu_id)
        t2 = time.perf_counter()
        for _, proc in nlp.pipeline:
            if getattr(proc, "is_trainable", False) and proc.model not in (True, False, None):
                proc.finish_update(optimizer)
        sync(gpu_id)
        t3 = time.perf_counter()
        if i >= warmup:
            trf_fb.append(t1 - t0)
            update.append(t2 - t1)
            opt.append(t3 - t2)
    step = numpy.add(update, opt)
    head = numpy.subtract(update, trf_fb)
    mean_step = float(step.mean())
    result = {
        "steps_timed": len(step),
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch": round(mean_step * steps_per_epoch, 1),
        "mean_step_seconds": round(mean_step, 4),
        "transformer_forward_backward_seconds": round(float(numpy.mean(trf_fb)), 4),
        "head_seconds": round(float(head.mean()), 4),
        "optimizer_seconds": round(float(numpy.mean(opt)), 4),
        "head_share": round(float(head.sum() / step.sum()), 3),
        "optimizer_share": round(float(numpy.sum(opt) / step.sum()), 3),
        "outside_transformer_forward_backward_share": round(float(1 - numpy.sum(trf_fb) / step.sum()), 3),
    }
    print(f"training: {result}", flush=True)
    return result


def long_text(texts: List[str], n_tokens: int, nlp) -> str:
    """Raw text of exactly n_tokens tokens, from the texts, with no sentence
    boundaries set (the pipeline has no sentencizer)."""
    words: List[str] = []
    while len(words) < n_tokens:
        for text in texts:
            words.extend(t.text for t in nlp.make_doc(text))
    return " ".join(words[:n_tokens])


def _status_mb(field: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def reset_peak_memory() -> float:
    """Reset the process's peak resident memory to its current value where
    Linux allows it (so loading the model does not hide the peak of the run);
    RETURNS the current resident memory in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    current = _status_mb("VmRSS")
    return current if current is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def peak_memory() -> float:
    """The peak resident memory in MB since ``reset_peak_memory``."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def length_worker(args) -> int:
    """One length in this process: print a JSON line with the timing and memory."""
    nlp = load(args.model, args.doc_windows, args.gpu_id)
    texts = [eg.reference.text for eg in Corpus(str(args.test))(nlp)]
    text = long_text(texts, args.length_worker, nlp)
    disable = [] if args.mode == "pipeline" else [name for name in nlp.pipe_names if name != "transformer"]
    with nlp.select_pipes(disable=disable):
        nlp(texts[0])  # warm-up
        base = reset_peak_memory()
        best = float("inf")
        for _ in range(args.repeats_long):
            start = time.perf_counter()
            doc = nlp(text)
            sync(args.gpu_id)
            best = min(best, time.perf_counter() - start)
    peak = peak_memory()
    spert_seconds = None
    if args.mode == "pipeline":  # the spert component alone on the encoded doc
        spert_seconds = min(run_head(nlp, [doc], 1, args.gpu_id) for _ in range(args.repeats_long))
    out = {"tokens": len(doc), "wordpieces": n_wordpieces([doc]), "seconds": round(best, 3),
           "peak_rss_mb": round(peak), "rss_before_mb": round(base)}
    if args.mode == "pipeline":
        out["spert_seconds"] = round(spert_seconds, 3)
        out["entities"] = len(doc.spans["sc"])
        out["relations"] = len(doc._.relations)
    print(json.dumps(out), flush=True)
    return 0


def lengths(args, values: List[int]) -> List[Dict[str, Any]]:
    rows = []
    for n in values:
        row: Dict[str, Any] = {"tokens": n}
        for mode in ("pipeline", "transformer"):
            cmd = [sys.executable, __file__, str(args.model), "--test", str(args.test), "--results", "-",
                   "--length-worker", str(n), "--mode", mode, "--gpu-id", str(args.gpu_id),
                   "--repeats-long", str(args.repeats_long)] + (["--doc-windows"] if args.doc_windows else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            data = json.loads(out)
            row[mode] = data
        row["head_share"] = round(1 - row["transformer"]["seconds"] / row["pipeline"]["seconds"], 3)
        spert = row["pipeline"]["spert_seconds"]
        row["head_share_direct"] = round(spert / (row["transformer"]["seconds"] + spert), 3)
        print(f"length {n}: {row}", flush=True)
        rows.append(row)
    return rows


def plot(rows: List[Dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = [r["tokens"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("pipeline", "o-"), ("transformer", "s--")):
        ax1.plot(tokens, [r[mode]["seconds"] for r in rows], style, label=f"{mode} (transformer + spert)" if mode == "pipeline" else "transformer alone")
        ax2.plot(tokens, [r[mode]["peak_rss_mb"] / 1024 for r in rows], style, label="pipeline" if mode == "pipeline" else "transformer alone")
    for ax, ylabel in ((ax1, "seconds per doc (log-log)"), (ax2, "peak memory of the process (GB)")):
        ax.set_xlabel("document length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(results: Dict[str, Any]) -> str:
    inf = results["inference"]
    lines = [f"Inference on {inf['n_docs']} docs ({inf['n_wordpieces']} wordpieces), median of {inf['repeats']} alternating runs:", "",
             "| batch size | pipeline docs/s | transformer docs/s | pipeline wordpieces/s | transformer wordpieces/s | head share (min–max) | spert alone s | direct head share |",
             "|---|---|---|---|---|---|---|---|"]
    for bs, r in inf["by_batch_size"].items():
        lo, hi = r["head_share_min_max"]
        lines.append(f"| {bs} | {r['pipeline_docs_per_s']} | {r['transformer_docs_per_s']} | {r['pipeline_wordpieces_per_s']} | "
                     f"{r['transformer_wordpieces_per_s']} | {r['head_share']:.1%} ({lo:.1%}–{hi:.1%}) | {r['head_alone_seconds']} | {r['head_share_direct']:.1%} |")
    t = results.get("training")
    if t:
        lines += ["", f"Training ({t['steps_timed']} steps timed, {t['steps_per_epoch']} steps per epoch):", "",
                  "| seconds per epoch | step | transformer fwd+bwd | spert head | optimizer | head share | outside transformer fwd+bwd |",
                  "|---|---|---|---|---|---|---|",
                  f"| {t['seconds_per_epoch']} | {t['mean_step_seconds']} s | {t['transformer_forward_backward_seconds']} s | "
                  f"{t['head_seconds']} s | {t['optimizer_seconds']} s | {t['head_share']:.1%} | {t['outside_transformer_forward_backward_share']:.1%} |"]
    rows = results.get("lengths")
    if rows:
        lines += ["", "Time and peak memory against document length (raw text, no sentence boundaries):", "",
                  "| tokens | wordpieces | pipeline s | transformer s | spert alone s | pipeline tokens/s | head share | direct head share | pipeline peak MB (+ over loaded) | transformer peak MB (+ over loaded) | entities | relations |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            p, b = r["pipeline"], r["transformer"]
            lines.append(f"| {r['tokens']} | {p['wordpieces']} | {p['seconds']} | {b['seconds']} | {p['spert_seconds']} | {round(r['tokens'] / p['seconds'])} | "
                         f"{r['head_share']:.1%} | {r['head_share_direct']:.1%} | {p['peak_rss_mb']} (+{p['peak_rss_mb'] - p['rss_before_mb']}) | "
                         f"{b['peak_rss_mb']} (+{b['peak_rss_mb'] - b['rss_before_mb']}) | {p['entities']} | {p['relations']} |")
    lines += ["", f"Command: `{results['command']}`; device: {results['machine']['device']}; "
              f"versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--train", type=Path)
    parser.add_argument("--results", required=True)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=0, help="0: one epoch; <0: no training")
    parser.add_argument("--lengths", default="100,300,1000,3000,10000,20000", help="'' for none")
    parser.add_argument("--repeats-long", type=int, default=2)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc-windows", action="store_true", help="keep the model's own span getter")
    parser.add_argument("--length-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="pipeline", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    util.fix_random_seed(args.seed)
    if args.length_worker:
        return length_worker(args)

    nlp = load(args.model, args.doc_windows, args.gpu_id)
    examples = list(Corpus(str(args.test))(nlp))
    texts = [eg.reference.text for eg in examples]
    results: Dict[str, Any] = {
        "model": str(args.model),
        "command": shlex.join([Path(sys.executable).name] + sys.argv),
        "seed": args.seed,
        "spacy_spert_path": str(Path(spacy_spert.__file__).parent),
        "windows": "model's own" if args.doc_windows else SENTENCE_WINDOWS,
        "inference": inference(nlp, texts, [int(b) for b in args.batch_sizes.split(",") if b], args.repeats, args.gpu_id),
    }
    if args.train is not None and args.train_steps >= 0:
        train_examples = list(Corpus(str(args.train))(nlp))
        results["training"] = training(nlp, train_examples, args.train_steps, args.gpu_id)
    if args.lengths:
        results["lengths"] = lengths(args, [int(n) for n in args.lengths.split(",")])
    device = "CPU"
    if args.gpu_id >= 0:
        import torch

        device = torch.cuda.get_device_name(args.gpu_id)
    import torch

    results["versions"] = package_versions()
    results["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform(), "device": device}
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    table = markdown(results)
    path.with_suffix(".md").write_text(table, encoding="utf8")
    if args.plot and results.get("lengths"):
        plot(results["lengths"], args.plot, f"{args.model}: raw text without sentence boundaries, {device}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
