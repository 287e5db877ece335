"""The reading side of ``predict --engine ray`` (:mod:`.predict_ray`): the
input files listed, and each file cut into chunks of docs keyed by (file,
line), one chunk per actor task."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .ray_output import DOC, END_OF_FILE

INPUT_FORMATS = ("jsonl", "parquet")


class SplitDocs:
    """A ``map_batches`` function (one file per batch): a file row
    ({"path", "bytes"}) to chunk rows of at most ``rows_per_task`` docs each,
    {"file": index, "line", "kind", "raw", "n": lists with one entry per doc},
    and a last chunk with the end-of-file entry whose ``n`` is the file's
    number of docs (its ``line`` is past the last doc). A chunk is one row, so
    that each chunk is one block and one actor task."""

    def __init__(self, files: Sequence[str], input_format: str, rows_per_task: int) -> None:
        self.index = {path: i for i, path in enumerate(files)}
        self.input_format, self.rows_per_task = input_format, rows_per_task

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, list]:
        chunks: Dict[str, list] = {"file": [], "line": [], "kind": [], "raw": [], "n": []}
        for path, data in zip(batch["path"], batch["bytes"]):
            file, data = self.index[path], bytes(data)
            if self.input_format == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                records = pq.read_table(pa.BufferReader(data)).to_pylist()
                raws = [
                    (n, json.dumps(r, ensure_ascii=False, default=str).encode("utf8")) for n, r in enumerate(records, 1)
                ]
                last = len(records)
            else:
                lines = data.split(b"\n")
                raws = [(n, raw) for n, raw in enumerate(lines, 1) if raw.strip()]
                last = len(lines)
            for start in range(0, len(raws), self.rows_per_task):
                chunk = raws[start : start + self.rows_per_task]
                chunks["file"].append(file)
                chunks["line"].append([n for n, _ in chunk])
                chunks["kind"].append([DOC] * len(chunk))
                chunks["raw"].append([raw for _, raw in chunk])
                chunks["n"].append([0] * len(chunk))
            chunks["file"].append(file)
            for key, value in (("line", last + 1), ("kind", END_OF_FILE), ("raw", b""), ("n", len(raws))):
                chunks[key].append([value])
        return chunks


def format_of(path: str) -> str:
    """RETURNS (str): The input format of a file: "parquet" for a .parquet file, else "jsonl"."""
    return "parquet" if path.endswith(".parquet") else "jsonl"


def list_input_files(ray, inputs: Sequence[str], input_format: Optional[str]) -> List[str]:
    """The input files below ``inputs``, as Ray Data lists them.

    ray (module): The imported ``ray`` module.
    inputs (Sequence[str]): Files or folders (local paths or URIs).
    input_format (Optional[str]): "jsonl" or "parquet"; None for both.
    RETURNS (List[str]): The files, sorted and without repeats.
    RAISES: FileNotFoundError for a local input that does not exist; ValueError if no file is found.
    """
    extensions = [input_format] if input_format else list(INPUT_FORMATS)
    try:
        files = ray.data.read_binary_files(list(inputs), num_cpus=0, file_extensions=extensions).input_files()
    except FileNotFoundError:
        for path in inputs:
            if "://" not in path and not Path(path).exists():
                raise FileNotFoundError(2, "No such file or directory", path) from None
        raise
    if not files:
        raise ValueError(f"{', '.join(inputs)}: no {' or '.join('.' + e for e in extensions)} files")
    return sorted(set(files))
