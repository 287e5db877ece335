"""The driver's side of the Ray engine (:mod:`spacy_spert.apps.predict_ray`):
the row kinds that pass between its stages, the output files (JSONL lines or
Parquet row groups: :class:`JsonlSink`, :class:`ParquetSink`) and the
:class:`Collector`, which writes the docs that come back from the actors in
input order, each once, and checks that all came back."""

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..io.jsonl import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from .predict_ray import RayPredictReport

__all__ = ["DOC", "END_OF_FILE", "FAILED", "INVALID", "Collector", "JsonlSink", "ParquetSink"]

# Row kinds between the stages.
DOC, INVALID, END_OF_FILE, FAILED = 0, 1, 2, 3


class JsonlSink:
    """Records to a JSONL file, one line each, as they come.

    f (BinaryIO): The output file.
    """

    def __init__(self, f) -> None:
        self.f = f

    def add(self, line: str) -> None:
        self.f.write((line + "\n").encode("utf8"))

    def close(self) -> None:
        pass


class ParquetSink:
    """Records to a Parquet file in row groups of ``chunk`` rows. The columns
    are the fields of the first row group in their order of appearance;
    ``entities`` and ``relations`` have fixed struct types.

    f (BinaryIO): The output file. text_key (str): The text's field.
    chunk (int): Rows per row group (the first one decides the columns).
    """

    def __init__(self, f, text_key: str, chunk: int = 4096) -> None:
        import pyarrow as pa

        self.pa, self.f, self.text_key, self.chunk = pa, f, text_key, chunk
        self.rows: List[Dict[str, Any]] = []
        self.n_written = 0
        self.writer: Any = None  # a pyarrow ParquetWriter once the first rows are in
        self.schema: Any = None
        self.fixed = {
            text_key: pa.string(),
            "entities": pa.list_(
                pa.struct(
                    [
                        ("start", pa.int64()),
                        ("end", pa.int64()),
                        ("token_start", pa.int64()),
                        ("token_end", pa.int64()),
                        ("label", pa.string()),
                        ("score", pa.float64()),
                        ("text", pa.string()),
                    ]
                )
            ),
            "relations": pa.list_(
                pa.struct([("head", pa.int64()), ("tail", pa.int64()), ("label", pa.string()), ("score", pa.float64())])
            ),
        }

    def add(self, line: str) -> None:
        self.rows.append(json.loads(line))
        if len(self.rows) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        import pyarrow.parquet as pq

        pa = self.pa
        if not self.rows:
            return
        if self.schema is None:
            names = list(dict.fromkeys(name for row in self.rows for name in row))
            self.schema = pa.schema(
                [(name, self.fixed.get(name) or pa.array([r.get(name) for r in self.rows]).type) for name in names]
            )
            self.writer = pq.ParquetWriter(self.f, self.schema)
        for k, row in enumerate(self.rows):
            extra = [name for name in row if name not in self.schema.names]
            if extra:
                raise ValueError(
                    f"Parquet output: doc {self.n_written + k + 1} has the field {extra[0]!r}, which the "
                    f"first {self.chunk} docs do not have; write JSONL instead"
                )
        try:
            table = pa.Table.from_pylist(self.rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(
                f"Parquet output: a field changes its type after the first docs ({e}); write JSONL instead"
            ) from None
        self.writer.write_table(table)
        self.n_written += len(self.rows)
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is None:  # no docs: an empty file with the fixed columns
            import pyarrow.parquet as pq

            self.schema = self.pa.schema(list(self.fixed.items()))
            self.writer = pq.ParquetWriter(self.f, self.schema)
        self.writer.close()


class Collector:
    """The driver's side: writes the docs that arrive, in input order, each
    (file, line) once, and checks at the end that every file's docs all
    came back (see :mod:`spacy_spert.apps.predict_ray`).

    files (List[str]): The input files by index. input_format (str): "jsonl" or "parquet".
    sink (JsonlSink / ParquetSink): Where the docs go.
    report (RayPredictReport): The report to count in.
    skip_invalid (bool): Leave out invalid lines instead of raising them.
    id_key (Optional[str]): The field whose values must be unique, or None.
    bar (tqdm): The progress bar, one step per doc written.
    """

    COLUMNS = ("line", "kind", "n", "output", "id", "n_entities", "n_relations")

    def __init__(
        self,
        files: List[str],
        input_format: str,
        sink,
        report: "RayPredictReport",
        skip_invalid: bool,
        id_key: Optional[str],
        bar,
    ) -> None:
        self.files, self.input_format, self.sink, self.report = files, input_format, sink, report
        self.skip_invalid, self.id_key, self.bar = skip_invalid, id_key, bar
        self.last_line: Dict[int, int] = {}  # file -> the last line written
        self.counts: Dict[int, int] = {}  # file -> docs (and invalid lines) received
        self.expected: Dict[int, int] = {}  # file -> docs its read task found
        self.ids: Dict[str, tuple] = {}  # id -> (file, line), with id_key

    def add_batch(self, batch: Dict[str, Any]) -> None:
        """An output batch of the actors: chunk rows with per-doc lists."""
        for file, *columns in zip(batch["file"], *(batch[name] for name in self.COLUMNS)):
            for row in zip(*(list(column) for column in columns)):
                self.add(int(file), *row)

    def add(
        self, file: int, line: int, kind: int, n: int, output: str, doc_id: str, n_entities: int, n_relations: int
    ) -> None:
        report = self.report
        if kind == FAILED:
            raise OSError(str(output))
        if kind == END_OF_FILE:
            report.duplicates += file in self.expected
            self.expected[file] = int(n)
            return
        if line <= self.last_line.get(file, 0):  # written already: the copy of a retried task
            report.duplicates += 1
            return
        self.last_line[file] = line
        self.counts[file] = self.counts.get(file, 0) + 1
        where = "line" if self.input_format == "jsonl" else "row"
        if kind == INVALID:
            error = InvalidInput(self.files[file], str(output), int(line) if where == "line" else None)
            if not self.skip_invalid:
                raise error
            report.skipped.append(error)
            return
        if self.id_key is not None:
            if doc_id in self.ids:
                first_file, first_line = self.ids[doc_id]
                raise ValueError(
                    f"{self.files[file]}: {where} {line}: the id {doc_id} ({self.id_key!r}) is also the "
                    f"id of {self.files[first_file]} {where} {first_line}; ids must be unique"
                )
            self.ids[doc_id] = (file, int(line))
        self.sink.add(str(output))
        report.n_docs += 1
        report.n_entities += int(n_entities)
        report.n_relations += int(n_relations)
        self.bar.update(1)

    def finish(self) -> None:
        """RAISES: ValueError if a file's docs did not all come back."""
        missing = [
            (i, self.counts.get(i, 0), self.expected.get(i))
            for i in range(len(self.files))
            if i not in self.expected or self.counts.get(i, 0) != self.expected[i]
        ]
        if missing:
            i, got, want = missing[0]
            raise ValueError(
                f"{self.files[i]}: {got} of {want if want is not None else 'its'} docs came back from "
                f"the Ray actors ({len(missing)} files incomplete); no output written"
            )
