"""The steps that the experiments run in fresh processes: ``spacy train`` and
``spacy_spert evaluate``. A fresh process per run keeps one run's memory (and
GPU memory) out of the next, and its timing free of the caller's state.

Training is spaCy's own ``train`` command: the config decides the learning-rate
schedule, and ``--section.key value`` overrides are passed on unchanged.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Union

PathLike = Union[str, Path]
# The repository root: ``python -m research`` in a fresh process finds the
# research tools through it from any working directory.
ROOT = Path(__file__).resolve().parents[1]


def research_env() -> Dict[str, str]:
    """This process's environment with the repository root on ``PYTHONPATH``.

    RETURNS (Dict[str, str]): The environment for a ``python -m research`` process.
    """
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


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
    return [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(config),
        "--output",
        str(output),
        "--gpu-id",
        str(gpu_id),
        "--paths.train",
        str(train),
        "--paths.dev",
        str(dev),
        *overrides,
    ]


def evaluate_command(model: PathLike, data: PathLike, output: PathLike, gpu_id: int = -1) -> List[str]:
    """The command line of ``python -m spacy_spert evaluate`` (see
    :func:`spacy_spert.apps.evaluate.evaluate`).

    model (Path): The pipeline. data (Path): The gold .spacy corpus.
    output (Path): The JSON file for the scores. gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (List[str]): The arguments, starting with the Python interpreter.
    """
    return [
        sys.executable,
        "-m",
        "spacy_spert",
        "evaluate",
        str(model),
        str(data),
        "--output",
        str(output),
        "--gpu-id",
        str(gpu_id),
    ]


def run(cmd: Sequence[str]) -> None:
    """Print the command and run it; its output goes to this process's.

    cmd (Sequence[str]): The command.
    RAISES: subprocess.CalledProcessError if it fails.
    """
    print(f"$ {shlex.join(cmd)}", flush=True)
    subprocess.run(list(cmd), check=True)
