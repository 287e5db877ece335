"""Peak memory of a trained SpERT pipeline: inference on a batch of
sentences and on one long document, and training steps whose batches hold at
most a budget of tokens.

Cases, each in a fresh process (``python -m research.memory SPEC``), so that
memory one case freed cannot hide the next one's:

1. ``batch``: one ``nlp.pipe`` batch of the first ``batch_size`` TEST texts.
2. ``long`` and ``long_transformer``: a raw text of ``long_tokens`` tokens
   made of the TEST sentences (no sentence boundaries, as ``research speed``
   makes it), through the pipeline and through the transformer alone.
3. ``train_<B>``: ``steps`` training steps as ``spacy train`` runs them
   (``nlp.update`` with the config's dropout, ``finish_update`` of every
   component, ``step_schedules``; the optimizer's state included), on
   batches of the TRAIN examples (shuffled with the seed) made by spaCy's
   ``spacy.batch_by_words.v1`` with ``size`` B tokens and tolerance 0: no
   batch holds more than B tokens, and a doc longer than B is a batch of its
   own (docs/training-and-configs.md, "Memory").

The transformer encodes with ``spacy-spert.sentence_windows.v1`` (128
tokens, stride 96), as in ``research speed``. On a GPU the peak is torch's ``max_memory_allocated`` over the case (cupy
allocates through torch's allocator in a spacy-transformers pipeline), and
"loaded" is what was allocated before it. On the CPU it is the process's
peak resident memory (VmHWM) over the case, reset after loading where Linux
allows it, and "loaded" the resident memory then: the allocator keeps some
freed memory, so CPU numbers are upper bounds of what a case needs.

:func:`run_memory` writes RESULTS (JSON) and its tables (.md) with the
command, versions, seed and machine.
"""

import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy.training import Example

from .measure import peak_memory, reset_peak_memory, stopwatch
from .records import provenance, recorded_command, save_results
from .runs import run_worker, worker_main
from .speed import load, long_text, n_wordpieces
from .steps import optimizer_step, training_section, update


def train_batches(examples: List[Example], budget: int, seed: int) -> List[List[Example]]:
    """The training batches of at most ``budget`` tokens: the examples
    shuffled with the seed, batched by ``spacy.batch_by_words.v1`` (tolerance
    0; a longer doc is a batch of its own).

    examples (List[Example]): The training examples. budget (int): Tokens per batch.
    seed (int): The shuffle's seed.
    RETURNS (List[List[Example]]): The batches.
    """
    from spacy.util import registry

    order = list(examples)
    random.Random(seed).shuffle(order)
    batcher = registry.batchers.get("spacy.batch_by_words.v1")(size=budget, tolerance=0.0, discard_oversize=False)
    return list(batcher(order))


def case_worker(
    model: Path,
    test: Path,
    case: str,
    gpu_id: int,
    batch_size: int,
    long_tokens: int,
    train: Optional[Path] = None,
    steps: int = 3,
    seed: int = 0,
) -> Dict[str, Any]:
    """One case in this process (a fresh one: see :func:`run_memory`).

    model (Path): The pipeline. test (Path): The corpus whose texts are tagged.
    case (str): ``"batch"``, ``"long"``, ``"long_transformer"`` or ``"train_<tokens>"``.
    gpu_id (int): The GPU, -1 for the CPU. batch_size (int): Docs of ``batch``.
    long_tokens (int): Tokens of the long doc. train (Optional[Path]): The
        training corpus (``train_*``). steps (int): Training steps. seed (int): The seed.
    RETURNS (Dict[str, Any]): case, docs, tokens, wordpieces (inference),
        seconds, loaded_mb, peak_mb, delta_mb.
    """
    from spacy import util
    from spacy.training import Corpus

    util.fix_random_seed(seed)
    nlp = load(model, False, gpu_id)
    texts = [eg.reference.text for eg in Corpus(str(test))(nlp)]
    out: Dict[str, Any] = {"case": case}
    seconds: List[float] = []
    if case.startswith("train_"):
        budget = int(case.split("_", 1)[1])
        T = training_section(nlp, train)  # (the learning-rate schedule counts its docs)
        batches = train_batches(list(Corpus(str(train))(nlp)), budget, seed)[:steps]
        loaded = reset_peak_memory(gpu_id)
        with stopwatch(gpu_id, seconds):
            for batch in batches:
                update(nlp, batch, T["dropout"])
                optimizer_step(nlp, T["optimizer"])
        tokens = [sum(len(eg.predicted) for eg in batch) for batch in batches]
        out |= {"docs": sum(map(len, batches)), "tokens": max(tokens), "steps": len(batches)}
    else:
        if case == "batch":
            inputs, bs = texts[:batch_size], batch_size
        else:
            inputs, bs = [long_text(texts, long_tokens, nlp)], 1
        disable = [name for name in nlp.pipe_names if name != "transformer"] if case.endswith("transformer") else []
        with nlp.select_pipes(disable=disable):
            list(nlp.pipe(texts[:2]))  # warm-up
            loaded = reset_peak_memory(gpu_id)
            with stopwatch(gpu_id, seconds):
                docs = list(nlp.pipe(inputs, batch_size=bs))
        out |= {"docs": len(docs), "tokens": sum(map(len, docs)), "wordpieces": n_wordpieces(docs)}
    peak = peak_memory(gpu_id)
    return out | {
        "seconds": round(seconds[0], 3),
        "loaded_mb": round(loaded),
        "peak_mb": round(peak),
        "delta_mb": round(peak) - round(loaded),  # as the table's columns subtract
    }


def markdown(results: Dict[str, Any]) -> str:
    """The table of a memory results file.

    results (Dict[str, Any]): As written by :func:`run_memory`.
    RETURNS (str): Markdown.
    """
    unit = "GPU memory allocated (torch)" if results["gpu_id"] >= 0 else "resident memory of the process"
    lines = [
        f"Peak memory ({unit}) of `{results['model']}`; each case in a fresh process:",
        "",
        "| case | docs | tokens (largest step) | wordpieces | seconds | loaded MB | peak MB | peak - loaded MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["cases"]:
        lines.append(
            f"| {r['case']} | {r['docs']} | {r['tokens']} | {r.get('wordpieces', '')} | {r['seconds']} | "
            f"{r['loaded_mb']} | {r['peak_mb']} | {r['delta_mb']} |"
        )
    lines += [
        "",
        "batch: one batch of test sentences; long: one raw text without sentence boundaries (long_transformer: "
        "the transformer alone on it); train_B: training steps (optimizer state included) on batches of at most "
        "B tokens from `spacy.batch_by_words.v1` (tolerance 0).",
        "",
        provenance(results, f"seed {results['seed']}", f"device: {results['machine']['device']}"),
        "",
    ]
    return "\n".join(lines)


def run_memory(
    model: Path,
    test: Path,
    results_path: Path,
    *,
    train: Optional[Path] = None,
    batch_size: int = 64,
    long_tokens: int = 20000,
    budgets: Sequence[int] = (500, 1000, 2000),
    steps: int = 3,
    gpu_id: int = -1,
    seed: int = 0,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Measure every case in a fresh process and write the results file and
    its table.

    model (Path): The trained pipeline. test (Path): The inference corpus.
    results_path (Path): The JSON results file; the table goes next to it (.md).
    train (Optional[Path]): The training corpus; None: no training cases.
    batch_size (int): Docs of the inference batch. long_tokens (int): Tokens
        of the long doc (0: none). budgets (Sequence[int]): Tokens per
        training batch, one case each. steps (int): Training steps per case.
    gpu_id (int): The GPU, -1 for the CPU. seed (int): The random seed.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The results written.
    """
    cases = ["batch"] + (["long", "long_transformer"] if long_tokens > 0 else [])
    if train is not None:
        cases += [f"train_{b}" for b in budgets]
    rows = []
    for case in cases:
        spec = {
            "model": str(model),
            "test": str(test),
            "case": case,
            "gpu_id": gpu_id,
            "batch_size": batch_size,
            "long_tokens": long_tokens,
            "train": None if train is None else str(train),
            "steps": steps,
            "seed": seed,
        }
        row = run_worker(__name__, spec)
        print(f"{case}: {row}", flush=True)
        rows.append(row)
    results = {
        "model": str(model),
        "test": str(test),
        "train": None if train is None else str(train),
        "command": recorded_command(command),
        "seed": seed,
        "gpu_id": gpu_id,
        "batch_size": batch_size,
        "long_tokens": long_tokens,
        "steps": steps,
        "cases": rows,
    }
    return save_results(results_path, results, markdown, gpu_id=gpu_id)


if __name__ == "__main__":
    # The fresh process of one case: the spec is the JSON of case_worker's arguments.
    worker_main(case_worker, ("model", "test", "train"))
