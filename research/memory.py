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

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .records import command_line, machine, package_versions, write_results
from .runs import research_env
from .speed import load, long_text, n_wordpieces, peak_memory, reset_peak_memory, sync

MB = 2**20


def _start(gpu_id: int) -> float:
    """Reset the peak and return the memory in use now (MB)."""
    if gpu_id >= 0:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / MB
    return reset_peak_memory()


def _peak(gpu_id: int) -> float:
    """RETURNS (float): The peak memory (MB) since :func:`_start`."""
    if gpu_id >= 0:
        import torch

        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / MB
    return peak_memory()


def train_batches(examples: List, budget: int, seed: int) -> List[List]:
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
    from thinc.api import set_dropout_rate

    util.fix_random_seed(seed)
    nlp = load(model, False, gpu_id)
    texts = [eg.reference.text for eg in Corpus(str(test))(nlp)]
    out: Dict[str, Any] = {"case": case}
    if case.startswith("train_"):
        budget = int(case.split("_", 1)[1])
        config = nlp.config.copy()
        config["paths"]["train"] = str(train)  # (the learning-rate schedule counts its docs)
        T = util.registry.resolve({"t": config.interpolate()["training"]}, validate=False)["t"]
        batches = train_batches(list(Corpus(str(train))(nlp)), budget, seed)[:steps]
        optimizer = T["optimizer"]
        loaded = _start(gpu_id)
        start = time.perf_counter()
        for batch in batches:
            set_dropout_rate(nlp.get_pipe("transformer").model, T["dropout"])
            nlp.update(batch, drop=T["dropout"], sgd=False, losses={})
            for _, proc in nlp.pipeline:
                if getattr(proc, "is_trainable", False) and proc.model not in (True, False, None):
                    proc.finish_update(optimizer)
            optimizer.step_schedules()
        sync(gpu_id)
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
            loaded = _start(gpu_id)
            start = time.perf_counter()
            docs = list(nlp.pipe(inputs, batch_size=bs))
            sync(gpu_id)
        out |= {"docs": len(docs), "tokens": sum(map(len, docs)), "wordpieces": n_wordpieces(docs)}
    seconds = time.perf_counter() - start
    peak = _peak(gpu_id)
    return out | {
        "seconds": round(seconds, 3),
        "loaded_mb": round(loaded),
        "peak_mb": round(peak),
        "delta_mb": round(peak - loaded),
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
        f"Command: `{results['command']}`; seed {results['seed']}; device: {results['machine']['device']}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
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
        cmd = [sys.executable, "-m", __name__, json.dumps(spec)]
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=research_env())
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{case}: {row}", flush=True)
        rows.append(row)
    results = {
        "model": str(model),
        "test": str(test),
        "train": None if train is None else str(train),
        "command": command if command is not None else command_line(),
        "seed": seed,
        "gpu_id": gpu_id,
        "batch_size": batch_size,
        "long_tokens": long_tokens,
        "steps": steps,
        "cases": rows,
        "versions": package_versions(),
        "machine": machine(gpu_id),
    }
    write_results(results_path, results, markdown(results))
    return results


if __name__ == "__main__":
    # The fresh process of one case: the spec is the JSON of case_worker's arguments.
    spec = json.loads(sys.argv[1])
    spec["model"], spec["test"] = Path(spec["model"]), Path(spec["test"])
    spec["train"] = None if spec["train"] is None else Path(spec["train"])
    print(json.dumps(case_worker(**spec)), flush=True)
