"""Speed and memory of a trained SpERT pipeline against its bare transformer.

All in one run, on the same docs, so that the ratios hold while the machine's
speed drifts:

1. Inference on the TEST texts for each batch size: docs/s and wordpieces/s
   of the full pipeline and of the transformer alone (``nlp.select_pipes``),
   timed in turn (full, bare, full, bare, ...) ``repeats`` times; the head's
   share is 1 - bare time / full time, the median over the repeats. As the
   difference of two noisy times it can even come out negative, so the spert
   component is also timed alone on the docs the transformer encoded:
   direct head share = spert time / (transformer time + spert time).
2. Training on the TRAIN examples as ``spacy train`` steps (``nlp.update``
   with the config's dropout, then ``finish_update`` of every component with
   the config's optimizer), ``train_steps`` batches of the config's batch size
   (0: one epoch). Before each step the transformer alone runs its forward
   and backward pass on the same batch. A step splits into: the transformer's
   forward and backward; the spert head (sampling, pooling, classifiers,
   losses and their backward: update time - transformer time); and the
   optimizer step (all weights, nearly all the transformer's). Seconds per
   epoch = the mean step time x steps per epoch (no evaluation).
3. Time and peak memory against document length: raw text made of the TEST
   sentences, without sentence boundaries, cut to each length in ``lengths``
   tokens. Each length runs in a fresh process (``python -m
   research.speed SPEC``), once for the pipeline and once for
   the transformer alone; the table gives seconds (best of ``repeats_long``),
   the spert component alone on the encoded doc (best of ``repeats_long`` or
   more runs, up to 30 while they take under a second: ``best_of``),
   tokens/s, the resident memory after loading and its peak during the run
   (Linux resets the peak after loading, through /proc/self/clear_refs).

Unless ``doc_windows`` is set, the transformer encodes docs with
``spacy-spert.sentence_windows.v1`` (128 tokens, stride 96), whatever the
model's config says, so that docs of any length fit; for sentence-level test
docs of up to 128 tokens this is one window per doc, as ``doc_spans``.

:func:`run_speed` writes RESULTS (JSON), RESULTS with .md (tables) and
optionally a PNG of time and memory against length (matplotlib, the ``bench``
extra). It records the command, versions and machine.

Only two functions reach inside components:
:func:`~research.steps.transformer_step` (the spacy-transformers model's
output and backprop) and :func:`run_head` (finds the spert components by
factory name).
"""

import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, cast

import numpy
from spacy.language import Language
from spacy.pipeline import Pipe, TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import set_dropout_rate

from .measure import best_of, peak_memory, reset_peak_memory, run_pipe, stopwatch
from .records import provenance, recorded_command, save_results
from .runs import run_worker, worker_main
from .steps import optimizer_step, training_section, transformer_step, update

SENTENCE_WINDOWS = {"@span_getters": "spacy-spert.sentence_windows.v1", "max_tokens": 128, "stride": 96}


def load(model: Path, doc_windows: bool, gpu_id: int) -> Language:
    """Load the pipeline, with sentence windows unless ``doc_windows``.

    model (Path): The pipeline. doc_windows (bool): Keep the model's own span getter.
    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Language): The pipeline.
    """
    import spacy

    import spacy_spert  # noqa: F401  (the span getters)

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    overrides = {} if doc_windows else {"components.transformer.model.get_spans": SENTENCE_WINDOWS}
    return spacy.load(model, config=overrides)


def n_wordpieces(docs: Iterable[Doc]) -> int:
    """Wordpieces the transformer encoded, [CLS] and [SEP] included, padding not.

    docs (Iterable[Doc]): Docs processed by the transformer.
    RETURNS (int): The number of wordpieces.
    """
    return int(sum(int(numpy.asarray(doc._.trf_data.wordpieces.lengths).sum()) for doc in docs))


def run_head(nlp: Language, docs: List[Doc], batch_size: int, gpu_id: int) -> float:
    """Seconds of the spert components alone on docs the transformer encoded.

    nlp (Language): The pipeline. docs (List[Doc]): Encoded docs.
    batch_size (int): The batch size. gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (float): Seconds.
    """
    times: List[float] = []
    with stopwatch(gpu_id, times):
        for name in nlp.pipe_names:
            if nlp.get_pipe_meta(name).factory == "spert":
                for _ in cast(Pipe, nlp.get_pipe(name)).pipe(docs, batch_size=batch_size):
                    pass
    return times[0]


def inference(nlp: Language, texts: List[str], batch_sizes: Sequence[int], repeats: int, gpu_id: int) -> Dict[str, Any]:
    """Step 1: inference speed by batch size (see the module docstring).

    nlp (Language): The pipeline. texts (List[str]): The texts.
    batch_sizes (Sequence[int]): The batch sizes. repeats (int): Alternating runs.
    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Dict[str, Any]): {"n_docs", "n_wordpieces", "repeats", "by_batch_size"}.
    """
    wordpieces = n_wordpieces(nlp.pipe(texts, batch_size=64))
    rows = {}
    for batch_size in batch_sizes:
        full: List[float] = []
        bare: List[float] = []
        head: List[float] = []
        run_pipe(nlp, texts[: 2 * batch_size], batch_size, gpu_id)  # warm-up
        for _ in range(repeats):
            full.append(run_pipe(nlp, texts, batch_size, gpu_id))
            with nlp.select_pipes(enable=["transformer"]):
                bare.append(run_pipe(nlp, texts, batch_size, gpu_id))
                docs = list(nlp.pipe(texts, batch_size=batch_size))
            head.append(run_head(nlp, docs, batch_size, gpu_id))
        t_full, t_bare, t_head = statistics.median(full), statistics.median(bare), statistics.median(head)
        shares = [1 - b / f for f, b in zip(full, bare)]
        rows[str(batch_size)] = {
            "pipeline_docs_per_s": round(len(texts) / t_full, 1),
            "transformer_docs_per_s": round(len(texts) / t_bare, 1),
            "pipeline_wordpieces_per_s": round(wordpieces / t_full),
            "transformer_wordpieces_per_s": round(wordpieces / t_bare),
            "head_share": round(statistics.median(shares), 3),
            "head_share_min_max": [round(min(shares), 3), round(max(shares), 3)],
            "head_alone_seconds": round(t_head, 4),
            "head_share_direct": round(t_head / (t_bare + t_head), 3),
        }
        print(f"batch {batch_size}: {rows[str(batch_size)]}", flush=True)
    return {"n_docs": len(texts), "n_wordpieces": wordpieces, "repeats": repeats, "by_batch_size": rows}


def training(
    nlp: Language, examples: List[Example], n_steps: int, gpu_id: int, train_path: Optional[Path] = None
) -> Dict[str, Any]:
    """Step 2: the training step split (see the module docstring).

    nlp (Language): The pipeline, with its training config.
    examples (List[Example]): The training examples.
    train_path (Optional[Path]): Their corpus file: the learning-rate schedule
        counts its docs (default: the config's paths.train).
    n_steps (int): Batches to run; 0: one epoch.
    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Dict[str, Any]): Mean seconds per part of a step and the shares.
    """
    T = training_section(nlp, train_path)
    batches = list(T["batcher"](examples))
    steps_per_epoch = len(batches)
    batches = batches[:n_steps] if n_steps > 0 else batches
    optimizer = T["optimizer"]
    trf = cast(TrainablePipe, nlp.get_pipe("transformer"))
    set_dropout_rate(trf.model, T["dropout"])
    updates: List[float] = []
    trf_fb: List[float] = []
    opt: List[float] = []
    warmup = min(3, len(batches) - 1)  # the first steps warm up (allocator, caches)
    for i, batch in enumerate(batches):
        if i == warmup:
            for times in (trf_fb, updates, opt):
                times.clear()
        with stopwatch(gpu_id, trf_fb):
            transformer_step(trf, [eg.predicted for eg in batch])
        with stopwatch(gpu_id, updates):
            update(nlp, batch, T["dropout"])
        with stopwatch(gpu_id, opt):
            optimizer_step(nlp, optimizer)
    step = numpy.add(updates, opt)
    head = numpy.subtract(updates, trf_fb)
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


def long_text(texts: List[str], n_tokens: int, nlp: Language) -> str:
    """Raw text of exactly n_tokens tokens, from the texts, with no sentence
    boundaries set (the pipeline has no sentencizer).

    texts (List[str]): The texts to repeat. n_tokens (int): The length.
    nlp (Language): Its tokenizer counts the tokens.
    RETURNS (str): The text.
    """
    words: List[str] = []
    while len(words) < n_tokens:
        for text in texts:
            words.extend(t.text for t in nlp.make_doc(text))
    return " ".join(words[:n_tokens])


def length_worker(
    model: Path, test: Path, n_tokens: int, mode: str, gpu_id: int, repeats_long: int, doc_windows: bool, seed: int = 0
) -> Dict[str, Any]:
    """Step 3 for one length and mode, in this process (a fresh one: see
    :func:`lengths`).

    model (Path): The pipeline. test (Path): The corpus whose texts make the doc.
    n_tokens (int): The doc's length.
    mode (str): ``"pipeline"`` or ``"transformer"`` (alone).
    gpu_id (int): The GPU, -1 for the CPU.
    repeats_long (int): Timed runs; the best counts.
    doc_windows (bool): Keep the model's own span getter.
    seed (int): The random seed.
    RETURNS (Dict[str, Any]): tokens, wordpieces, seconds, peak_rss_mb,
        rss_before_mb; for the pipeline also spert_seconds, entities, relations.
    """
    from spacy import util
    from spacy.training import Corpus

    util.fix_random_seed(seed)
    nlp = load(model, doc_windows, gpu_id)
    texts = [eg.reference.text for eg in Corpus(str(test))(nlp)]
    text = long_text(texts, n_tokens, nlp)
    disable = [] if mode == "pipeline" else [name for name in nlp.pipe_names if name != "transformer"]
    with nlp.select_pipes(disable=disable):
        nlp(texts[0])  # warm-up
        base = reset_peak_memory()
        times: List[float] = []
        for _ in range(repeats_long):
            with stopwatch(gpu_id, times):
                doc = nlp(text)
        best = min(times)
    peak = peak_memory()
    out = {
        "tokens": len(doc),
        "wordpieces": n_wordpieces([doc]),
        "seconds": round(best, 4),
        "peak_rss_mb": round(peak),
        "rss_before_mb": round(base),
    }
    if mode == "pipeline":  # the spert component alone on the encoded doc
        out["spert_seconds"] = round(best_of(lambda: run_head(nlp, [doc], 1, gpu_id), repeats_long), 5)
        out["entities"] = len(doc.spans["sc"])
        out["relations"] = len(doc._.relations)
    return out


def lengths(
    model: Path, test: Path, values: Sequence[int], gpu_id: int, repeats_long: int, doc_windows: bool, seed: int = 0
) -> List[Dict[str, Any]]:
    """Step 3: time and memory against length, each length and mode in a fresh
    process running :func:`length_worker`.

    model (Path): The pipeline. test (Path): The corpus whose texts make the docs.
    values (Sequence[int]): The lengths in tokens.
    gpu_id (int): The GPU, -1 for the CPU. repeats_long (int): Timed runs each.
    doc_windows (bool): Keep the model's own span getter. seed (int): The random seed.
    RETURNS (List[Dict[str, Any]]): One row per length.
    """
    rows = []
    for n in values:
        row: Dict[str, Any] = {"tokens": n}
        for mode in ("pipeline", "transformer"):
            spec = {
                "model": str(model),
                "test": str(test),
                "n_tokens": n,
                "mode": mode,
                "gpu_id": gpu_id,
                "repeats_long": repeats_long,
                "doc_windows": doc_windows,
                "seed": seed,
            }
            row[mode] = run_worker(__name__, spec)
        row["head_share"] = round(1 - row["transformer"]["seconds"] / row["pipeline"]["seconds"], 3)
        spert = row["pipeline"]["spert_seconds"]
        row["head_share_direct"] = round(spert / (row["transformer"]["seconds"] + spert), 3)
        print(f"length {n}: {row}", flush=True)
        rows.append(row)
    return rows


def plot(rows: List[Dict[str, Any]], path: Path, title: str) -> None:
    """Draw time (log-log) and peak memory against length to a PNG.

    rows (List[Dict[str, Any]]): As returned by :func:`lengths`.
    path (Path): The PNG file. title (str): The figure's title.
    RAISES: ImportError without matplotlib (``pip install spacy-spert[bench]``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = [r["tokens"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("pipeline", "o-"), ("transformer", "s--")):
        ax1.plot(
            tokens,
            [r[mode]["seconds"] for r in rows],
            style,
            label=f"{mode} (transformer + spert)" if mode == "pipeline" else "transformer alone",
        )
        ax2.plot(
            tokens,
            [r[mode]["peak_rss_mb"] / 1024 for r in rows],
            style,
            label="pipeline" if mode == "pipeline" else "transformer alone",
        )
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
    """The tables of a speed results file.

    results (Dict[str, Any]): As written by :func:`run_speed`.
    RETURNS (str): Markdown.
    """
    inf = results["inference"]
    lines = [
        f"Inference on {inf['n_docs']} docs ({inf['n_wordpieces']} wordpieces), median of {inf['repeats']} alternating runs:",
        "",
        "| batch size | pipeline docs/s | transformer docs/s | pipeline wordpieces/s | transformer wordpieces/s | head share (min–max) | spert alone s | direct head share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bs, r in inf["by_batch_size"].items():
        lo, hi = r["head_share_min_max"]
        lines.append(
            f"| {bs} | {r['pipeline_docs_per_s']} | {r['transformer_docs_per_s']} | {r['pipeline_wordpieces_per_s']} | "
            f"{r['transformer_wordpieces_per_s']} | {r['head_share']:.1%} ({lo:.1%}–{hi:.1%}) | {r['head_alone_seconds']} | {r['head_share_direct']:.1%} |"
        )
    t = results.get("training")
    if t:
        lines += [
            "",
            f"Training ({t['steps_timed']} steps timed, {t['steps_per_epoch']} steps per epoch):",
            "",
            "| seconds per epoch | step | transformer fwd+bwd | spert head | optimizer | head share | outside transformer fwd+bwd |",
            "|---|---|---|---|---|---|---|",
            f"| {t['seconds_per_epoch']} | {t['mean_step_seconds']} s | {t['transformer_forward_backward_seconds']} s | "
            f"{t['head_seconds']} s | {t['optimizer_seconds']} s | {t['head_share']:.1%} | {t['outside_transformer_forward_backward_share']:.1%} |",
        ]
    rows = results.get("lengths")
    if rows:
        lines += [
            "",
            "Time and peak memory against document length (raw text, no sentence boundaries):",
            "",
            "| tokens | wordpieces | pipeline s | transformer s | spert alone s | pipeline tokens/s | head share | direct head share | pipeline peak MB (+ over loaded) | transformer peak MB (+ over loaded) | entities | relations |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            p, b = r["pipeline"], r["transformer"]
            lines.append(
                f"| {r['tokens']} | {p['wordpieces']} | {p['seconds']} | {b['seconds']} | {p['spert_seconds']} | {round(r['tokens'] / p['seconds'])} | "
                f"{r['head_share']:.1%} | {r['head_share_direct']:.1%} | {p['peak_rss_mb']} (+{p['peak_rss_mb'] - p['rss_before_mb']}) | "
                f"{b['peak_rss_mb']} (+{b['peak_rss_mb'] - b['rss_before_mb']}) | {p['entities']} | {p['relations']} |"
            )
    lines += ["", provenance(results, f"device: {results['machine']['device']}"), ""]
    return "\n".join(lines)


def run_speed(
    model: Path,
    test: Path,
    results_path: Path,
    *,
    train: Optional[Path] = None,
    batch_sizes: Sequence[int] = (1, 8, 64),
    repeats: int = 5,
    train_steps: int = 0,
    length_values: Sequence[int] = (100, 300, 1000, 3000, 10000, 20000),
    repeats_long: int = 2,
    plot_path: Optional[Path] = None,
    gpu_id: int = -1,
    seed: int = 0,
    doc_windows: bool = False,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Measure (see the module docstring) and write the results file, its
    tables and, with ``plot_path`` and lengths, the plot.

    model (Path): The trained pipeline. test (Path): The inference corpus.
    results_path (Path): The JSON results file; the tables go next to it (.md).
    train (Optional[Path]): The training corpus; None: no training step split.
    batch_sizes (Sequence[int]): Inference batch sizes.
    repeats (int): Alternating inference runs per batch size.
    train_steps (int): Training steps to time; 0: one epoch; < 0: none.
    length_values (Sequence[int]): Document lengths in tokens; empty: none.
    repeats_long (int): Timed runs per length.
    plot_path (Optional[Path]): A PNG for time and memory against length.
    gpu_id (int): The GPU, -1 for the CPU. seed (int): The random seed.
    doc_windows (bool): Keep the model's own span getter.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    from spacy import util
    from spacy.training import Corpus

    import spacy_spert

    util.fix_random_seed(seed)
    nlp = load(model, doc_windows, gpu_id)
    texts = [eg.reference.text for eg in Corpus(str(test))(nlp)]
    results: Dict[str, Any] = {
        "model": str(model),
        "command": recorded_command(command),
        "seed": seed,
        "spacy_spert_path": str(Path(spacy_spert.__file__).parent),
        "windows": "model's own" if doc_windows else SENTENCE_WINDOWS,
        "inference": inference(nlp, texts, batch_sizes, repeats, gpu_id),
    }
    if train is not None and train_steps >= 0:
        train_examples = list(Corpus(str(train))(nlp))
        results["training"] = training(nlp, train_examples, train_steps, gpu_id, train_path=train)
    if length_values:
        results["lengths"] = lengths(model, test, length_values, gpu_id, repeats_long, doc_windows, seed)
    results = save_results(results_path, results, markdown, gpu_id=gpu_id)
    if plot_path is not None and results.get("lengths"):
        plot(
            results["lengths"],
            plot_path,
            f"{model}: raw text without sentence boundaries, {results['machine']['device']}",
        )
    return results


if __name__ == "__main__":
    # The fresh process of one length: the spec is the JSON of length_worker's arguments.
    worker_main(length_worker, ("model", "test"))
