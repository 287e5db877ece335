"""The paper protocol over several seeds: one ``benchmark`` run per seed, then
the mean and sample standard deviation of every score.

SpERT's paper reports the mean over 5 runs; one run moves by 1 to 3 F1 points,
so differences smaller than the spread of the seeds are not findings.

For each seed, in a fresh process: ``python -m research benchmark CONFIG
--train TRAIN --test TEST --output-dir OUTPUT/seed<N> --results
PREFIX-seed<N>.json --seed N ...`` (train on TRAIN, model-last scored on TEST;
see :mod:`.benchmark`), its output also written to ``OUTPUT/seed<N>.log`` (the
training table: the test scores after every epoch). ``jobs`` runs that many
seeds at once (e.g. several on one GPU; the timings of runs that share a
machine are not comparable, so time inference separately then). With
``resume``, a seed whose results file exists is not run again, provided the
file was made with the same config, corpora, epochs and overrides.

The summary (``PREFIX-seeds.json`` and ``.md``) holds, for every score of
``SCORE_NAMES`` (P, R and F1 x 100), the per-seed values, their mean and their
sample standard deviation (ddof 1; 0 for one seed), the per-seed results files
and commands, the versions and the machine.
"""

import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence

import srsly
from wasabi import msg

from spacy_spert.pipeline.scorer import SCORE_NAMES

from .benchmark import settings
from .kfold import aggregate
from .records import machine, package_versions, recorded_command, write_results
from .runs import CommandArg, python_module, research_env

METRICS = ("p", "r", "f")


def check_seeds(seeds: Sequence[int]) -> List[int]:
    """The seeds of a run over seeds.

    seeds (Sequence[int]): The seeds asked for.
    RETURNS (List[int]): The seeds, as ints.
    RAISES: ValueError for no or repeated seeds.
    """
    checked = [int(seed) for seed in seeds]
    if not checked or len(set(checked)) != len(checked):
        raise ValueError(f"give one or more different seeds, got {checked}")
    return checked


def seed_results(prefix: Path, seed: int) -> Path:
    """The results file of one seed: ``PREFIX-seed<N>.json``."""
    return Path(f"{prefix}-seed{seed}.json")


def summary_path(prefix: Path) -> Path:
    """The summary file: ``PREFIX-seeds.json``."""
    return Path(f"{prefix}-seeds.json")


def benchmark_command(
    config: Path,
    train: Path,
    test: Path,
    output_dir: Path,
    results: Path,
    *,
    seed: int,
    epochs: int,
    gpu_id: int,
    batch_sizes: Sequence[int],
    overrides: Sequence[str] = (),
) -> List[str]:
    """The ``benchmark`` command of one seed.

    batch_sizes (Sequence[int]): Inference batch sizes to time; empty: ``--skip-speed``.
    RETURNS (List[str]): The arguments, starting with the Python interpreter.
    """
    speed = ["--batch-sizes", ",".join(map(str, batch_sizes))] if batch_sizes else ["--skip-speed"]
    paths: List[CommandArg] = ["--train", train, "--test", test, "--output-dir", output_dir, "--results", results]
    run_args: List[CommandArg] = ["--epochs", epochs, "--seed", seed, "--gpu-id", gpu_id]
    return python_module("research", "benchmark", config, *paths, *run_args, *speed, *overrides)


def _copy_lines(source: IO[str], log: IO[str], echo: bool) -> None:
    for line in source:
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()


def run_logged(cmd: Sequence[str], log_path: Path, echo: bool) -> None:
    """Run a command, its output (stdout and stderr) written to ``log_path``
    and, with ``echo``, to this process's stdout.

    RAISES: subprocess.CalledProcessError if it fails (the log says why).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {shlex.join(cmd)}  (log: {log_path})", flush=True)
    with log_path.open("w", encoding="utf8") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        process = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=research_env()
        )
        copier = threading.Thread(target=_copy_lines, args=(process.stdout, log, echo))
        copier.start()
        status = process.wait()
        copier.join()
    if status:
        raise subprocess.CalledProcessError(status, list(cmd))


def _without_eval_frequency(overrides: Sequence[str]) -> List[str]:
    """The overrides without ``--training.eval_frequency N`` (which benchmark
    adds to those it records when the user gives none)."""
    out, args = [], list(overrides)
    while args:
        arg = args.pop(0)
        if arg == "--training.eval_frequency" and args:
            args.pop(0)
        else:
            out.append(arg)
    return out


def check_reusable(results: Dict[str, Any], path: Path, expected: Dict[str, Any]) -> None:
    """Raise ValueError naming the first setting in which an existing results
    file differs from this run's.

    results (Dict[str, Any]): The existing file's content. path (Path): Its path.
    expected (Dict[str, Any]): config, train, test, epochs, seed, overrides of this run.
    """
    for key, value in expected.items():
        found = results.get(key)
        if key == "overrides":
            found, value = _without_eval_frequency(found or []), _without_eval_frequency(value)
        if found != value:
            raise ValueError(
                f"{path}: made with {key} = {found!r}, this run has {value!r}; remove the file or leave out --resume"
            )


def run_seeds(
    config: Path,
    train: Path,
    test: Path,
    output_dir: Path,
    prefix: Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 20,
    gpu_id: int = -1,
    jobs: int = 1,
    batch_sizes: Sequence[int] = (1, 8, 64),
    resume: bool = False,
    overrides: Sequence[str] = (),
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """Benchmark every seed (or reuse its results with ``resume``), then write
    the summary.

    config (Path): The training config. train (Path), test (Path): The corpora.
    output_dir (Path): Folder for the runs (``seed<N>/`` and ``seed<N>.log``).
    prefix (Path): Results path prefix: ``PREFIX-seed<N>.json`` per seed and
        ``PREFIX-seeds.json`` (+ ``.md``) for the summary.
    seeds (Sequence[int]): The seeds. epochs (int): Training epochs.
    gpu_id (int): The GPU, -1 for the CPU. jobs (int): Seeds run at once.
    batch_sizes (Sequence[int]): Inference batch sizes each run times; empty: none.
    resume (bool): Reuse existing per-seed results files made with the same settings.
    overrides (Sequence[str]): ``--section.key value`` config overrides for training.
    command (Optional[str]): The command to record (default: this process's).
    RETURNS (Dict[str, Any]): The summary written.
    RAISES: ValueError for no or repeated seeds, jobs < 1, or a results file
        made with other settings; subprocess.CalledProcessError if a run fails.
    """
    seeds = check_seeds(seeds)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    overrides = list(overrides)
    todo = []
    for seed in seeds:
        path = seed_results(prefix, seed)
        if resume and path.exists():
            check_reusable(srsly.read_json(path), path, settings(config, train, test, epochs, seed, overrides))
            msg.info(f"seed {seed}: using {path}")
        else:
            todo.append(seed)

    def one(seed: int) -> None:
        cmd = benchmark_command(
            config,
            train,
            test,
            Path(output_dir) / f"seed{seed}",
            seed_results(prefix, seed),
            seed=seed,
            epochs=epochs,
            gpu_id=gpu_id,
            batch_sizes=batch_sizes,
            overrides=overrides,
        )
        run_logged(cmd, Path(output_dir) / f"seed{seed}.log", echo=jobs == 1)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, seed) for seed in todo]:
            future.result()
    summary = summarize({seed: srsly.read_json(seed_results(prefix, seed)) for seed in seeds}, prefix)
    summary["command"] = recorded_command(command)
    summary["machine"] = machine(gpu_id) | {"gpu_id": gpu_id, "jobs": jobs}
    write_results(summary_path(prefix), summary, markdown(summary))
    return summary


def summarize(per_seed: Dict[int, Dict[str, Any]], prefix: Path) -> Dict[str, Any]:
    """Mean and sample standard deviation over seeds of every headline score.

    per_seed (Dict[int, Dict[str, Any]]): Seed -> its results file's content.
    prefix (Path): The results path prefix (to name the per-seed files).
    RETURNS (Dict[str, Any]): config, train, test, epochs, overrides (of the
        first seed), seeds, per_seed ({seed: {"results", "command", "metrics"}}),
        mean, std (both {score name: {"p", "r", "f"}}), versions.
    """
    headline = {
        seed: {score.name: {m: results["metrics"][score.name][m] for m in METRICS} for score in SCORE_NAMES}
        for seed, results in per_seed.items()
    }
    stats = aggregate({str(seed): metrics for seed, metrics in headline.items()})
    first = next(iter(per_seed.values()))

    def unflatten(flat: Dict[str, float]) -> Dict[str, Dict[str, float]]:
        return {score.name: {m: round(flat[f"{score.name}.{m}"], 2) for m in METRICS} for score in SCORE_NAMES}

    return {
        "config": first["config"],
        "train": first["train"],
        "test": first["test"],
        "epochs": first["epochs"],
        "overrides": first["overrides"],
        "seeds": list(per_seed),
        "per_seed": {
            str(seed): {
                "results": str(seed_results(prefix, seed)),
                "command": results["command"],
                "metrics": headline[seed],
            }
            for seed, results in per_seed.items()
        },
        "mean": unflatten(stats["mean"]),
        "std": unflatten(stats["std"]),
        "versions": package_versions(),
    }


def markdown(summary: Dict[str, Any]) -> str:
    """The summary's table: every headline F1 (and P, R) as mean +- std, then
    each seed's F1; the commands.

    summary (Dict[str, Any]): As returned by :func:`run_seeds`.
    RETURNS (str): Markdown.
    """
    seeds = list(summary["per_seed"])
    n = len(seeds)
    lines = [
        f"Mean +- sample standard deviation over {n} seed{'s' if n != 1 else ''} ({', '.join(seeds)}), "
        f"model-last after {summary['epochs']} epochs, x 100.",
        "",
        "| metric | F1 | P | R | " + " | ".join(f"F1 seed {s}" for s in seeds) + " |",
        "|---|---|---|---|" + "---|" * n,
    ]
    for score in SCORE_NAMES:
        mean, std = summary["mean"][score.name], summary["std"][score.name]
        cells = [f"{mean[m]:.2f} +- {std[m]:.2f}" for m in ("f", "p", "r")]
        cells += [f"{summary['per_seed'][s]['metrics'][score.name]['f']:.2f}" for s in seeds]
        lines.append(f"| {score.name} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{summary['command']}`", "", "Per seed:"]
    lines += [
        f"- seed {s}: `{summary['per_seed'][s]['results']}`: `{summary['per_seed'][s]['command']}`" for s in seeds
    ]
    return "\n".join(lines) + "\n"
