"""Installing spacy-spert changes nothing in programs that do not use it.

spaCy imports the ``spert`` factory's module through its entry point whenever
it creates any pipeline (``spacy.blank("en")`` too). So that import, and
``import spacy_spert``, must not import the torch side of the package,
install ``Doc._.relations`` or register the fork handler (which makes forked
children use one torch thread); creating a ``spert`` component does the last
two. Each check runs in a fresh process: the test process has imported
everything already."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

# The modules that import torch (directly or through spacy-transformers' models).
TORCH_SIDE = (
    "spacy_spert.models.architectures",
    "spacy_spert.models.pytorch",
    "spacy_spert.pipeline.spert",
    "spacy_spert.transformer",
)

# Threads that the parent sets before it forks: a child that reports them has
# not run the fork handler (which sets 1), whatever the number of cores.
PARENT_THREADS = 3

# Run as `python -c SCRIPT TINY_BERT`: creates a blank pipeline, then a spert
# component, and after each prints (as one JSON line) the spacy_spert modules
# imported, whether Doc has the relations extension and torch's number of
# threads in a child forked then (-1 when torch is not imported).
SCRIPT = f"""
import json, os, sys

def state():
    from spacy.tokens import Doc

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads({PARENT_THREADS})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, str(torch.get_num_threads() if torch is not None else -1).encode())
        os._exit(0)
    os.close(write)
    child_threads = int(os.read(read, 64))
    os.waitpid(pid, 0)
    return {{
        "modules": sorted(m for m in sys.modules if m.split(".")[0] == "spacy_spert"),
        "relations": Doc.has_extension("relations"),
        "child_threads": child_threads,
    }}

import spacy

nlp = spacy.blank("en")
print(json.dumps({{"after": "blank", **state()}}), flush=True)
nlp.add_pipe(
    "transformer",
    config={{"model": {{
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "name": sys.argv[1],
        "get_spans": {{"@span_getters": "spacy-spert.doc_spans.v1"}},
        "tokenizer_config": {{"use_fast": True}},
    }}}},
)
nlp.add_pipe("spert")
doc = nlp.make_doc("Mary works in Paris .")
print(json.dumps({{"after": "spert", "doc_relations": doc._.relations, **state()}}), flush=True)
"""


def _is_torch_side(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in TORCH_SIDE)


def _run(args: List[str], cwd: Path) -> List[Dict[str, Any]]:
    # From a folder outside the repository, without the tests' PYTHONPATH: the installed package only.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def states(tiny_bert, tmp_path_factory) -> Dict[str, Dict[str, Any]]:
    """The script's states, by the step they follow ("blank", "spert")."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    lines = _run(["-c", SCRIPT, str(tiny_bert)], tmp_path_factory.mktemp("import"))
    return {line.pop("after"): line for line in lines}


def test_blank_pipeline_imports_no_torch_side_module(states):
    modules = states["blank"]["modules"]
    assert "spacy_spert.pipeline.factory" in modules  # the entry point was loaded
    assert [m for m in modules if _is_torch_side(m)] == []


def test_blank_pipeline_installs_no_extension(states):
    assert states["blank"]["relations"] is False


def test_blank_pipeline_registers_no_fork_handler(states):
    # The handler is defined in spacy_spert.pipeline.spert, not imported here.
    assert "spacy_spert.pipeline.spert" not in states["blank"]["modules"]
    assert states["blank"]["child_threads"] in (PARENT_THREADS, -1)


def test_spert_component_installs_relations_and_fork_handler(states):
    """Creating the component does both (and shows that the checks above
    would see them)."""
    spert = states["spert"]
    assert "spacy_spert.pipeline.spert" in spert["modules"]
    assert spert["relations"] is True
    assert spert["doc_relations"] == []
    assert spert["child_threads"] == 1


def test_import_spacy_spert_imports_no_torch(tmp_path):
    code = "import json, sys, spacy_spert; print(json.dumps({'modules': sorted(sys.modules)}))"
    (line,) = _run(["-c", code], tmp_path)
    modules = line["modules"]
    assert "torch" not in modules
    assert [m for m in modules if m.startswith("spacy_spert.")] == []
