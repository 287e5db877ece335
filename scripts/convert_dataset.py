"""Convert every SpERT JSON file of a dataset folder to .spacy files.

    python scripts/convert_dataset.py IN_DIR OUT_DIR [--dataset NAME] [--types TYPES.json]

Each ``IN_DIR/<name>.json`` except the types file becomes
``OUT_DIR/<split>.spacy``, where ``<split>`` is the file name without the
``<dataset>_`` prefix (``conll04_train_dev.json`` -> ``train_dev.spacy``,
``ade_split_3_test.json`` -> ``split_3_test.spacy``, ``train.json`` ->
``train.spacy``). The dataset name defaults to IN_DIR's folder name; the types
file to ``<dataset>_types.json`` or ``types.json`` in IN_DIR. Every file is
checked against the types (see ``python -m spacy_spert convert``).
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from spacy_spert.convert import convert_file


def split_name(path: Path, dataset: str) -> str:
    stem = path.stem
    prefix = f"{dataset}_"
    return stem[len(prefix):] if stem.startswith(prefix) else stem


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir", type=Path, help="folder with the SpERT JSON files")
    parser.add_argument("output_dir", type=Path, help="folder for the .spacy files")
    parser.add_argument("--dataset", default=None, help="dataset name (default: the input folder's name)")
    parser.add_argument("--types", type=Path, default=None, help="types file (default: <dataset>_types.json or types.json)")
    args = parser.parse_args(argv)
    dataset = args.dataset or args.input_dir.resolve().name
    types = args.types
    if types is None:
        for candidate in (args.input_dir / f"{dataset}_types.json", args.input_dir / "types.json"):
            if candidate.exists():
                types = candidate
                break
    if types is None:
        print(f"error: no {dataset}_types.json or types.json in {args.input_dir}", file=sys.stderr)
        return 1
    files = sorted(p for p in args.input_dir.glob("*.json") if p.resolve() != types.resolve())
    if not files:
        print(f"error: no SpERT JSON files in {args.input_dir}", file=sys.stderr)
        return 1
    for path in files:
        output = args.output_dir / f"{split_name(path, dataset)}.spacy"
        try:
            n_docs = convert_file(path, output, types_path=types)
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{path} -> {output} ({n_docs} docs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
