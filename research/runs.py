"""The steps that the experiments run in fresh processes: ``spacy train``,
``spacy_spert evaluate`` and the workers of ``speed`` and ``memory`` (one
case each: :func:`run_worker`, :func:`worker_main`). A fresh process per run
keeps one run's memory (and GPU memory) out of the next, and its timing free
of the caller's state.

Training is spaCy's own ``train`` command: the config decides the learning-rate
schedule, and ``--section.key value`` overrides are passed on unchanged.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Dict, List, Sequence, Union

PathLike = Union[str, Path]
# An argument of a command line: str() makes it one.
CommandArg = Union[str, Path, int]
# The repository root: ``python -m research`` in a fresh process finds the
# research tools through it from any working directory.
ROOT = Path(__file__).resolve().parents[1]


def research_env() -> Dict[str, str]:
    """This process's environment with the repository root on ``PYTHONPATH``.

    RETURNS (Dict[str, str]): The environment for a ``python -m research`` process.
    """
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def python_module(module: str, *args: CommandArg) -> List[str]:
    """The command line of ``python -m MODULE ARGS`` with this interpreter.

    module (str): E.g. ``"spacy"``. args (CommandArg): Its arguments.
    RETURNS (List[str]): The arguments, starting with the Python interpreter.
    """
    return [sys.executable, "-m", module, *map(str, args)]


def train_command(
    config: PathLike, output: PathLike, train: PathLike, dev: PathLike, gpu_id: int = -1, overrides: Sequence[str] = ()
) -> List[str]:
    """The command line of ``python -m spacy train``.

    config (Path): The training config.
    output (Path): The folder for model-best and model-last.
    train (Path): The training corpus (``--paths.train``).
    dev (Path): The corpus evaluated during training (``--paths.dev``).
    gpu_id (int): The GPU, -1 for the CPU.
    overrides (Sequence[str]): Further ``--section.key value`` arguments.
    RETURNS (List[str]): The arguments, starting with the Python interpreter.
    """
    paths: List[CommandArg] = ["--paths.train", train, "--paths.dev", dev]
    return python_module("spacy", "train", config, "--output", output, "--gpu-id", gpu_id, *paths, *overrides)


def evaluate_command(model: PathLike, data: PathLike, output: PathLike, gpu_id: int = -1) -> List[str]:
    """The command line of ``python -m spacy_spert evaluate`` (see
    :func:`spacy_spert.apps.evaluate.evaluate`).

    model (Path): The pipeline. data (Path): The gold .spacy corpus.
    output (Path): The JSON file for the scores. gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (List[str]): The arguments, starting with the Python interpreter.
    """
    return python_module("spacy_spert", "evaluate", model, data, "--output", output, "--gpu-id", gpu_id)


def run(cmd: Sequence[str]) -> None:
    """Print the command and run it; its output goes to this process's.

    cmd (Sequence[str]): The command.
    RAISES: subprocess.CalledProcessError if it fails.
    """
    print(f"$ {shlex.join(cmd)}", flush=True)
    subprocess.run(list(cmd), check=True)


def run_worker(module: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run one case of a tool in a fresh process, ``python -m MODULE SPEC``
    (the module's :func:`worker_main`), and read what it measured.

    module (str): E.g. ``"research.memory"``.
    spec (Dict[str, Any]): The worker's arguments, JSON-serializable.
    RETURNS (Dict[str, Any]): The JSON of the worker's last line of output.
    RAISES: subprocess.CalledProcessError if it fails.
    """
    cmd = python_module(module, json.dumps(spec))
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=research_env())
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_main(worker: Callable[..., Dict[str, Any]], path_args: Collection[str]) -> None:
    """The fresh process of :func:`run_worker`: call ``worker`` with the JSON
    spec of ``sys.argv[1]`` and print its result as the last line of output.

    worker (Callable[..., Dict[str, Any]]): The function measuring one case.
    path_args (Collection[str]): The spec's keys whose values are paths (or None).
    """
    spec = json.loads(sys.argv[1])
    for key in path_args:
        spec[key] = None if spec.get(key) is None else Path(spec[key])
    print(json.dumps(worker(**spec)), flush=True)
