"""Convert every SpERT JSON file of a dataset folder to .spacy files.

Each ``IN_DIR/<name>.json`` except the types file becomes
``OUT_DIR/<split>.spacy``, where ``<split>`` is the file name without the
``<dataset>_`` prefix (``conll04_train_dev.json`` -> ``train_dev.spacy``,
``ade_split_3_test.json`` -> ``split_3_test.spacy``, ``train.json`` ->
``train.spacy``). The dataset name defaults to IN_DIR's folder name; the types
file to ``<dataset>_types.json`` or ``types.json`` in IN_DIR. Every file is
checked against the types (see :func:`spacy_spert.io.spert_json.convert_file`).
"""

from pathlib import Path
from typing import Iterator, Optional, Tuple

from spacy_spert.io.spert_json import convert_file


def split_name(path: Path, dataset: str) -> str:
    """The split of a dataset file: its name without ``.json`` and ``<dataset>_``.

    path (Path): E.g. ``conll04/conll04_train_dev.json``. dataset (str): E.g. ``"conll04"``.
    RETURNS (str): E.g. ``"train_dev"``.
    """
    stem = Path(path).stem
    prefix = f"{dataset}_"
    return stem[len(prefix) :] if stem.startswith(prefix) else stem


def find_types_file(input_dir: Path, dataset: str) -> Path:
    """The types file of a dataset folder.

    input_dir (Path): The folder. dataset (str): The dataset name.
    RETURNS (Path): ``<dataset>_types.json``, else ``types.json``.
    RAISES: ValueError if there is neither.
    """
    for candidate in (Path(input_dir) / f"{dataset}_types.json", Path(input_dir) / "types.json"):
        if candidate.exists():
            return candidate
    raise ValueError(f"no {dataset}_types.json or types.json in {input_dir}")


def convert_dataset(
    input_dir: Path, output_dir: Path, dataset: Optional[str] = None, types: Optional[Path] = None
) -> Iterator[Tuple[Path, Path, int]]:
    """Convert the files of a dataset folder, one at a time.

    input_dir (Path): The folder with the SpERT JSON files.
    output_dir (Path): The folder for the .spacy files.
    dataset (Optional[str]): The dataset name (default: ``input_dir``'s name).
    types (Optional[Path]): The types file (default: see :func:`find_types_file`).
    YIELDS (Tuple[Path, Path, int]): (JSON file, .spacy file, number of docs)
        after each file is written.
    RAISES: ValueError (a ConversionError for invalid data) or OSError at the
        first problem; files converted before it are kept.
    """
    input_dir = Path(input_dir)
    dataset = dataset or input_dir.resolve().name
    types = Path(types) if types is not None else find_types_file(input_dir, dataset)
    files = sorted(p for p in input_dir.glob("*.json") if p.resolve() != types.resolve())
    if not files:
        raise ValueError(f"no SpERT JSON files in {input_dir}")
    for path in files:
        output = Path(output_dir) / f"{split_name(path, dataset)}.spacy"
        yield path, output, convert_file(path, output, types_path=types)
