"""Every registered function of the package is reachable by name through its
entry point, in a process that has not imported spacy_spert: a packaged
pipeline or a config names ``spacy-spert.*`` functions before anything imports
the module that registers them.

The registrations are found by reading the source (every
``@registry.<registry>("...")`` and ``@Language.factory("...")`` under
spacy_spert/), so a new one without its entry point in pyproject.toml fails
here."""

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import pytest
import spacy_transformers  # noqa: F401  (defines registry.span_getters)
from spacy.util import registry

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "spacy_spert"
PYPROJECT = REPO_ROOT / "pyproject.toml"
DISTRIBUTION = "spacy-spert"
# Entry point groups that are not registries: `python -m spacy spert` (spaCy's CLI)
NON_REGISTRY_GROUPS = {"spacy_cli"}


class Registration(NamedTuple):
    registry: str  # the attribute of spacy.util.registry ("misc", "factories", ...)
    name: str  # the registered name
    target: str  # "module:function" of the registered function
    where: str  # file:line, for messages


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _string_constants(tree: ast.Module) -> Dict[str, str]:
    """Module-level ``NAME = "..."`` assignments (a registered name may be one)."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def _name_of(call: ast.Call, constants: Dict[str, str]) -> Optional[str]:
    """The registered name: the first argument (or ``name=``), a string or a
    module constant."""
    arg = call.args[0] if call.args else {k.arg: k.value for k in call.keywords}.get("name")
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.Name):
        return constants.get(arg.id)
    return None


def _registry_of(func: ast.expr) -> Optional[str]:
    """The registry a decorator or ``register`` call registers into:
    ``registry.misc`` / ``spacy.registry.misc`` / ``thinc.api.registry.misc``
    -> "misc"; ``Language.factory`` -> "factories"; else None."""
    if not isinstance(func, ast.Attribute):
        return None
    owner = func.value
    owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
    if owner_name == "registry":
        return func.attr
    if owner_name == "Language" and func.attr in ("factory", "component"):
        return "factories"
    return None


def scan_registrations() -> Tuple[List[Registration], List[str]]:
    """The registrations in the package's source.

    RETURNS (Tuple[List[Registration], List[str]]): The registrations found,
        and the places (file:line) of registrations whose name or function this
        scan cannot read (a form it does not know).
    """
    found, unreadable = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf8"), filename=str(path))
        constants = _string_constants(tree)
        module = _module_name(path)

        for node in ast.walk(tree):
            # @registry.misc("name") / @Language.factory("name", ...) on a def
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                for decorator in node.decorator_list:
                    if not isinstance(decorator, ast.Call):
                        continue
                    reg = _registry_of(decorator.func)
                    if reg is None:
                        continue
                    where = f"{path.relative_to(REPO_ROOT)}:{decorator.lineno}"
                    name = _name_of(decorator, constants)
                    if name is None:
                        unreadable.append(where)
                    else:
                        found.append(Registration(reg, name, f"{module}:{node.name}", where))
            # registry.misc.register("name", func=f)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register"
                and _registry_of(node.func.value) is not None
            ):
                where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                name = _name_of(node, constants)
                func = {k.arg: k.value for k in node.keywords}.get("func")
                if name is None or not isinstance(func, ast.Name):
                    unreadable.append(where)
                else:
                    found.append(Registration(_registry_of(node.func.value), name, f"{module}:{func.id}", where))
    return found, unreadable


REGISTRATIONS, UNREADABLE = scan_registrations()


def entry_point_group(registry_name: str) -> str:
    """The entry point group that ``registry.<registry_name>`` loads
    ("spacy_misc", "thinc_layers", ...; "spacy_factories" for factories)."""
    if registry_name == "factories":
        return "spacy_factories"
    return getattr(registry, registry_name).entry_point_namespace


def pyproject_entry_points() -> Dict[str, Dict[str, str]]:
    """pyproject.toml's [project.entry-points]: group -> name -> "module:attr"."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11+) or tomli")
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)["project"]["entry-points"]


def _top_level_names(module: str) -> set:
    """The names a module of the package defines or imports at its top level."""
    rel = Path(*module.split("."))
    path = REPO_ROOT / rel.with_suffix(".py")
    if not path.exists():
        path = REPO_ROOT / rel / "__init__.py"
    if not path.exists():
        return set()
    names = set()
    for node in ast.parse(path.read_text(encoding="utf8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign,)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def test_scan_reads_every_registration():
    assert not UNREADABLE, f"registrations whose name or function the scan cannot read: {UNREADABLE}"
    assert ("factories", "spert") in {(r.registry, r.name) for r in REGISTRATIONS}
    keys = [(r.registry, r.name) for r in REGISTRATIONS]
    assert len(keys) == len(set(keys)), "a name registered twice"
    for r in REGISTRATIONS:
        assert r.registry == "factories" or r.name.startswith("spacy-spert."), r


def test_pyproject_entry_points_are_the_registrations():
    """Every registration has its entry point, and every entry point (of a
    registry's group) names a registered function: no stale entry."""
    declared = pyproject_entry_points()
    expected: Dict[str, Dict[str, str]] = {}
    for r in REGISTRATIONS:
        expected.setdefault(entry_point_group(r.registry), {})[r.name] = r.target
    registry_groups = {group: eps for group, eps in declared.items() if group not in NON_REGISTRY_GROUPS}
    assert registry_groups == expected


def test_pyproject_entry_points_name_existing_objects():
    """Every target (the CLI's too) is defined at the top level of its module."""
    missing = []
    for group, eps in pyproject_entry_points().items():
        for name, value in eps.items():
            module, _, attr = value.partition(":")
            if not attr or attr not in _top_level_names(module):
                missing.append(f"[{group}] {name} = {value}")
    assert not missing, f"entry points that name nothing: {missing}"


def test_installed_entry_points_are_pyproject_s():
    """The environment's metadata (written at install time) has the entry
    points of pyproject.toml; otherwise the test below checks a stale install."""
    installed: Dict[str, Dict[str, str]] = {}
    for ep in importlib.metadata.distribution(DISTRIBUTION).entry_points:
        installed.setdefault(ep.group, {})[ep.name] = ep.value
    assert installed == pyproject_entry_points(), "reinstall the package: pip install -e ."


# Run in a fresh process from a folder outside the repository: resolves each
# (registry, name) first through its entry point alone, then as a config does
# (spacy.util.registry.get; a factory through Language, which loads the
# factories' entry points when a pipeline is created), and prints what each
# gives as "module:qualname" (or the error), with the spacy_spert modules
# imported before the first name was looked up.
RESOLVE = """
import json, sys
from spacy.language import Language
from spacy.util import registry

def where(func):
    return f"{func.__module__}:{func.__qualname__}"

def entry_point(reg_name, name):
    if reg_name == "factories":
        # spaCy >= 3.8 loads the factories' entry points through a registry of their own
        reg = getattr(registry, "_entry_point_factories", registry.factories)
    else:
        if not hasattr(registry, reg_name):
            import spacy_transformers  # defines registry.span_getters, as in any pipeline with a transformer
        reg = getattr(registry, reg_name)
    func = reg.get_entry_point(name)
    return where(func) if func is not None else None

def resolve(reg_name, name):
    if reg_name == "factories":
        Language()
        return where(registry.factories.get(Language.get_factory_name(name))) if Language.has_factory(name) else None
    return where(registry.get(reg_name, name))

out = {"preloaded": sorted(m for m in sys.modules if m.startswith("spacy_spert")), "names": {}}
for reg_name, name in json.loads(sys.argv[1]):
    try:
        found = {"entry_point": entry_point(reg_name, name), "resolved": resolve(reg_name, name)}
    except Exception as e:
        found = {"error": f"{type(e).__name__}: {e}"}
    out["names"][f"{reg_name} {name}"] = found
print(json.dumps(out))
"""


def test_every_registration_resolves_through_its_entry_point(tmp_path):
    # the factory last: creating a Language loads every factory's entry point
    names = sorted(((r.registry, r.name) for r in REGISTRATIONS), key=lambda n: n[0] == "factories")
    # Not the repository's folder nor the tests' PYTHONPATH: the installed package only.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", RESOLVE, json.dumps(names)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["preloaded"] == []
    expected = {f"{r.registry} {r.name}": {"entry_point": r.target, "resolved": r.target} for r in REGISTRATIONS}
    assert out["names"] == expected
