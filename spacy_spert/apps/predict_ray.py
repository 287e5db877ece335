"""Tag a corpus on a Ray cluster: the library side of ``python -m spacy_spert
predict --engine ray``. Needs the ``ray`` extra (``pip install
'spacy-spert[ray]'``, which installs ``ray[data]``).

How a run goes (:func:`predict_ray`):

1. Ray Data lists the input: one or more JSONL or Parquet files, or folders of
   them (``*.jsonl`` / ``*.parquet`` below the folder), on any file system Ray
   can read (local paths must exist on every node; ``s3://``, ``gs://``, NFS).
   Files are taken in sorted path order.
2. Read tasks (no CPU reserved: they are light next to the model, and the
   actors may hold every CPU) read each file whole and cut it into chunks of
   ``rows_per_task`` docs, each doc keyed by (file, line): the 1-based line of
   a JSONL file (blank lines are passed over, as ``predict`` does), the
   1-based row of a Parquet file. Each file also gives an end-of-file entry
   with its number of docs. A chunk is one block, so one actor task.
3. ``map_batches`` runs a pool of ``num_actors`` :class:`RayPredictor` actors
   (``num_cpus_per_actor`` CPUs, ``num_gpus_per_actor`` GPUs each). Each actor
   loads the pipeline once (a directory or an installed package: it must exist
   on every node), checks each line as ``predict`` does
   (:func:`~spacy_spert.io.jsonl.parse_jsonl_line`), runs the valid docs of a
   batch through :func:`~spacy_spert.apps.predict.pipe_by_length` and returns each
   as the JSON line ``predict`` writes (:func:`~spacy_spert.io.records.output_record`).
4. The driver streams the results in input order (Ray Data's
   ``preserve_order``), writes them to one JSONL or Parquet file (atomically:
   nothing is left on an error) and checks that every doc came back exactly
   once (see below).

Exactly once: Ray Data restarts an actor that dies (``max_restarts=-1``) and
resubmits the batch it was working on (``max_task_retries=-1``); only batches
that completed reach the driver. The driver keeps the output independent of
retries anyway: a (file, line) that comes back again is dropped (counted in
the report as ``duplicates``), and at the end each file's count of docs must
equal what its read task found, or the run fails with an error naming the
file (no output written).

The output is what ``predict`` writes for the same input, line for line (line
k of the JSONL output of a single JSONL file is the input's k-th doc), with
the same entities and relations; scores may differ in the last digits
(float32 arithmetic in batches of another composition), so the files are not
byte-identical (results/ray-throughput-*.md measures both). With ``id_key`` every doc must have that field, holding an
id used by no other doc (an error names the file and line otherwise), so that
the output can be joined back to the input by id. Parquet input rows become
JSON objects (values JSON cannot hold, such as timestamps, become strings).
Parquet output has the same fields as columns, ``entities`` and ``relations``
as lists of structs; a carried field must keep one type throughout.

An invalid line (not JSON, no text field, ...) stops the run with the error
``predict`` gives, naming the file and line (``row N`` for Parquet), unless
``skip_invalid``: then it is left out and listed in the report.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from thinc.api import get_current_ops, set_current_ops

from ..io.files import atomic_output, check_output_path
from ..io.jsonl import InvalidInput, parse_jsonl_line
from ..io.records import output_record, spert_spans_key
from .predict import DEFAULT_BATCH_SIZE, PredictReport, pipe_by_length
from .ray_input import INPUT_FORMATS, SplitDocs, format_of, list_input_files
from .ray_output import DOC, FAILED, INVALID, Collector, JsonlSink, ParquetSink

__all__ = ["RAY_INSTALL", "RayPredictReport", "RayPredictor", "predict_ray"]

PathLike = Union[str, Path]
RAY_INSTALL = "pip install 'spacy-spert[ray]'"
OUTPUT_FORMATS = ("jsonl", "parquet")
DEFAULT_NUM_ACTORS = 2


@dataclass
class RayPredictReport(PredictReport):
    """What :func:`predict_ray` did: :class:`~spacy_spert.apps.predict.PredictReport`'s
    counts and time (``seconds`` from building the dataset to the renamed
    output: actor start and model loading included, connecting to Ray not),
    and:

    n_files (int): Input files read.
    n_actors (int): Actors in the pool.
    duplicates (int): Docs that came back more than once and were dropped.
    """

    n_files: int = 0
    n_actors: int = 0
    duplicates: int = 0


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError(f"the Ray engine needs Ray Data ({e}): {RAY_INSTALL}") from None
    return ray


# The actors ------------------------------------------------------------------


class RayPredictor:
    """The ``map_batches`` actor: loads the pipeline once and turns batches of
    doc rows into output rows (one per input row, same ``file``/``line``/
    ``kind``): a doc's ``output`` is its JSON line as ``predict`` writes it
    (``n_entities``/``n_relations`` its counts, ``id`` the JSON of its
    ``id_key`` field); an invalid line's ``kind`` becomes INVALID and its
    ``output`` the problem; end-of-file rows pass through. If the pipeline
    cannot be loaded, every doc's ``kind`` is FAILED and its ``output`` says
    why (the driver raises it as an OSError).

    model (str): A pipeline directory or an installed package name, loaded
        with ``spacy.load`` in the actor.
    files (Sequence[str]): The input files by index (for error messages).
    input_format (str): "jsonl" or "parquet".
    text_key (str): The field with the text (also the output's).
    id_key (Optional[str]): The field every doc must have, or None.
    spans_key (Optional[str]): The entities' span group (default: the spert
        component's).
    batch_size (int): Docs per ``nlp.pipe`` batch.
    num_threads (int): Torch threads (the actor's CPUs).
    use_gpu (bool): Run on the GPU Ray gave this actor.
    max_length (Optional[int]): The longest text (default: the pipeline's
        ``nlp.max_length``), as for ``predict``.
    """

    def __init__(
        self,
        model: str,
        *,
        files: Sequence[str],
        input_format: str = "jsonl",
        text_key: str = "text",
        id_key: Optional[str] = None,
        spans_key: Optional[str] = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        num_threads: int = 1,
        use_gpu: bool = False,
        max_length: Optional[int] = None,
    ) -> None:
        import spacy
        import torch

        torch.set_num_threads(max(1, num_threads))
        self.files, self.input_format = list(files), input_format
        self.text_key, self.id_key, self.batch_size = text_key, id_key, batch_size
        # A pipeline that cannot be loaded (or a GPU that cannot be used) is
        # reported by the batches, so that the driver can say so in one line.
        self.load_error: Optional[str] = None
        try:
            if use_gpu:
                spacy.require_gpu(0)  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
            self.nlp = spacy.load(model)
        except (OSError, ValueError) as e:
            self.load_error = f"a Ray actor on {os.uname().nodename} could not load the pipeline {model}: {e}"
            return
        # thinc keeps the current ops in a context variable, and Ray Data may
        # call the actor from another thread than the one that ran __init__:
        # there they would be NumpyOps again, and thinc would hand a GPU
        # pipeline CPU tensors. __call__ installs these ops in its thread.
        self.ops = get_current_ops()
        self.spans_key = spans_key if spans_key is not None else spert_spans_key(self.nlp)
        self.max_length = max_length if max_length is not None else self.nlp.max_length
        self.nlp.max_length = max(self.nlp.max_length, self.max_length)  # longer texts: invalid lines

    def parse(self, raw: bytes, file: int, line: int) -> Union[tuple, InvalidInput]:
        """A doc row's (text, fields), or the problem with it."""
        source = self.files[file]
        item = parse_jsonl_line(raw, source, line, self.text_key, self.max_length)
        if not isinstance(item, InvalidInput) and self.id_key is not None and self.id_key not in item[1]:
            item = InvalidInput(source, f"no field {self.id_key!r} (the id key)", line)
        if isinstance(item, InvalidInput) and self.input_format == "parquet":
            item = InvalidInput(source, f"row {line}: {item.problem}")
        return item

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, list]:
        """Chunk rows (see :class:`~spacy_spert.apps.ray_input.SplitDocs`) to output chunk rows: the same
        ``file``/``line``/``n`` and per doc ``kind``, ``output``, ``id``,
        ``n_entities``, ``n_relations``."""
        if self.load_error is None:
            set_current_ops(self.ops)
        out: Dict[str, list] = {
            key: [] for key in ("file", "line", "kind", "n", "output", "id", "n_entities", "n_relations")
        }
        for file, lines, kinds, raws, ns in zip(batch["file"], batch["line"], batch["kind"], batch["raw"], batch["n"]):
            chunk = self.process(int(file), [int(x) for x in lines], [int(x) for x in kinds], list(raws))
            out["file"].append(int(file))
            out["line"].append([int(x) for x in lines])
            out["n"].append([int(x) for x in ns])
            for key, values in chunk.items():
                out[key].append(values)
        return out

    def process(self, file: int, lines: List[int], kinds: List[int], raws: List[bytes]) -> Dict[str, list]:
        """One chunk of one file: the per-doc output columns."""
        n = len(lines)
        out: Dict[str, list] = {
            "kind": list(kinds),
            "output": [""] * n,
            "id": [""] * n,
            "n_entities": [0] * n,
            "n_relations": [0] * n,
        }
        if self.load_error is not None:
            out["kind"], out["output"] = [FAILED] * n, [self.load_error] * n
            return out
        items = []
        for i in range(n):
            if kinds[i] != DOC:
                continue
            item = self.parse(bytes(raws[i]), file, lines[i])
            if isinstance(item, InvalidInput):
                out["kind"][i], out["output"][i] = INVALID, item.problem
            else:
                items.append((item[0], (i, item[1])))

        def convert(doc, context) -> None:
            i, fields = context
            record = output_record(doc, fields, self.spans_key, self.text_key)
            out["output"][i] = json.dumps(record, ensure_ascii=False)
            out["n_entities"][i], out["n_relations"][i] = len(record["entities"]), len(record["relations"])
            if self.id_key is not None:
                out["id"][i] = json.dumps(fields[self.id_key], sort_keys=True, default=str)

        for _ in pipe_by_length(
            self.nlp, items, batch_size=self.batch_size, buffer_size=max(1, len(items)), convert=convert
        ):
            pass
        return out


# The run ---------------------------------------------------------------------


def _absolute(path: PathLike) -> str:
    """An existing local path made absolute; anything else (a package name,
    ``s3://...``) as it is."""
    path = str(path)
    return str(Path(path).resolve()) if "://" not in path and Path(path).exists() else path


def predict_ray(
    model: PathLike,
    input_paths: Union[PathLike, Sequence[PathLike]],
    output_path: PathLike,
    *,
    address: Optional[str] = None,
    num_actors: int = DEFAULT_NUM_ACTORS,
    num_cpus_per_actor: float = 1,
    num_gpus_per_actor: float = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    rows_per_task: int = 256,
    input_format: Optional[str] = None,
    output_format: Optional[str] = None,
    text_key: str = "text",
    id_key: Optional[str] = None,
    skip_invalid: bool = False,
    spans_key: Optional[str] = None,
    progress: Optional[bool] = None,
    predictor_class: type = RayPredictor,
    max_length: Optional[int] = None,
) -> RayPredictReport:
    """Tag every doc of the input on a Ray cluster and write the results to
    one file on the driver (see the module docstring for the stages, formats
    and the exactly-once check).

    model (str / Path): A pipeline directory or installed package name that
        every node can load (a shared path, or the package installed on every
        node).
    input_paths (str / Path / Sequence): JSONL or Parquet files or folders of
        them; any path Ray Data can read.
    output_path (str / Path): The output file on the driver; replaced only at
        the end.
    address (Optional[str]): The Ray cluster, as for ``ray.init`` ("auto": the
        cluster this machine belongs to; "ray://HOST:10001": Ray Client).
        None: the connected one if ``ray.init`` was called, else the cluster
        named by ``RAY_ADDRESS``, else a new local cluster for this run.
    num_actors (int): Actors in the pool, each with its own copy of the model.
    num_cpus_per_actor (float): CPUs Ray reserves per actor (also its torch
        threads, at least 1).
    num_gpus_per_actor (float): GPUs per actor (0: CPU; 0.5: two actors share
        a GPU).
    batch_size (int): Docs per ``nlp.pipe`` batch in an actor.
    rows_per_task (int): Docs per actor task (sorted by length together); the
        work a crashed actor loses and redoes.
    input_format (Optional[str]): "jsonl" or "parquet"; default: from the
        paths' suffixes (a folder: both kinds of file, which must not mix).
    output_format (Optional[str]): "jsonl" or "parquet"; default: "parquet"
        for a ``.parquet`` output path, else "jsonl".
    text_key (str): The field with the text; also the output's text field.
    id_key (Optional[str]): A field that every doc must have, with a value no
        other doc has; None: docs are identified by file and line.
    skip_invalid (bool): Leave out invalid lines (listed in the report)
        instead of stopping at the first.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    progress (Optional[bool]): Show a docs/s bar on stderr (None: only when
        stderr is a terminal); True also shows Ray Data's progress and logs.
    predictor_class (type): The actor class: :class:`RayPredictor` or a
        subclass (for instance one that records or checks each batch).
    max_length (Optional[int]): The longest text in characters; longer ones
        are invalid lines (default: the pipeline's ``nlp.max_length``).
    RETURNS (RayPredictReport): Counts, skipped lines, duplicates, time.
    RAISES: ImportError without Ray; InvalidInput for an invalid line unless
        ``skip_invalid``; ValueError for invalid arguments, duplicate ids or
        docs missing from the results; OSError if a file cannot be read or
        written, or the pipeline cannot be loaded. No output file is left on
        any error.
    """
    from tqdm import tqdm

    # Local paths absolute: Ray's workers need not share the driver's working directory.
    inputs = [_absolute(p) for p in ([input_paths] if isinstance(input_paths, (str, Path)) else input_paths)]
    check_output_path(output_path, *inputs, read_suffixes=tuple("." + f for f in INPUT_FORMATS))
    check_output_path(output_path, model)
    model = _absolute(model)
    output_format = output_format or format_of(str(output_path))
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"unknown output format {output_format!r} for the Ray engine; expected one of: {', '.join(OUTPUT_FORMATS)}"
        )
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}; expected one of: {', '.join(INPUT_FORMATS)}")
    if num_actors < 1 or batch_size < 1 or rows_per_task < 1:
        raise ValueError(
            f"the number of actors, batch size and rows per task must be at least 1, got {num_actors}, "
            f"{batch_size} and {rows_per_task}"
        )
    if max_length is not None and max_length < 1:
        raise ValueError(f"the longest text (--max-length) must be at least 1 character, got {max_length}")
    if num_cpus_per_actor <= 0 or num_gpus_per_actor < 0:
        raise ValueError(
            f"CPUs per actor must be positive and GPUs per actor at least 0, got {num_cpus_per_actor} "
            f"and {num_gpus_per_actor}"
        )
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        import logging

        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=bool(progress))
    try:
        return _run(
            ray,
            model,
            inputs,
            Path(output_path),
            input_format=input_format,
            output_format=output_format,
            num_actors=num_actors,
            num_cpus_per_actor=num_cpus_per_actor,
            num_gpus_per_actor=num_gpus_per_actor,
            batch_size=batch_size,
            rows_per_task=rows_per_task,
            text_key=text_key,
            id_key=id_key,
            skip_invalid=skip_invalid,
            spans_key=spans_key,
            progress=progress,
            predictor_class=predictor_class,
            max_length=max_length,
            tqdm=tqdm,
        )
    finally:
        if started:
            ray.shutdown()


def _run(
    ray,
    model: str,
    inputs: List[str],
    output_path: Path,
    *,
    input_format,
    output_format,
    num_actors,
    num_cpus_per_actor,
    num_gpus_per_actor,
    batch_size,
    rows_per_task,
    text_key,
    id_key,
    skip_invalid,
    spans_key,
    progress,
    predictor_class,
    max_length,
    tqdm,
) -> RayPredictReport:
    start = time.perf_counter()
    report = RayPredictReport(n_actors=num_actors)
    files = list_input_files(ray, inputs, input_format)
    formats = {format_of(f) for f in files} if input_format is None else {input_format}
    if len(formats) > 1:
        raise ValueError(f"{', '.join(inputs)}: mixes .jsonl and .parquet files; pass one kind (or input_format)")
    (input_format,) = formats
    report.n_files = len(files)
    context = ray.data.DataContext.get_current()
    saved = (
        context.execution_options.preserve_order,
        context.enable_progress_bars,
        context.target_max_block_size,
        context.print_on_execution_start,
    )
    context.execution_options.preserve_order = True  # results reach the driver in input order
    context.enable_progress_bars = context.print_on_execution_start = bool(progress)
    # One row (a chunk of docs) per block: each chunk is a task of its own.
    # (Ray's repartition would need a CPU of its own, which the actors may hold.)
    context.target_max_block_size = 1
    try:
        ds = (
            ray.data.read_binary_files(files, include_paths=True, num_cpus=0)
            .map_batches(SplitDocs(files, input_format, rows_per_task), batch_size=1, batch_format="numpy", num_cpus=0)
            .map_batches(
                predictor_class,
                compute=ray.data.ActorPoolStrategy(size=num_actors),
                batch_size=1,
                batch_format="numpy",
                num_cpus=num_cpus_per_actor,
                num_gpus=num_gpus_per_actor or None,
                fn_constructor_kwargs=dict(
                    model=model,
                    files=files,
                    input_format=input_format,
                    text_key=text_key,
                    id_key=id_key,
                    spans_key=spans_key,
                    batch_size=batch_size,
                    num_threads=int(num_cpus_per_actor),
                    use_gpu=num_gpus_per_actor > 0,
                    max_length=max_length,
                ),
            )
        )
        disable = None if progress is None else not progress
        with atomic_output(output_path) as f, tqdm(unit="doc", disable=disable, leave=False) as bar:
            sink = JsonlSink(f) if output_format == "jsonl" else ParquetSink(f, text_key)
            collector = Collector(files, input_format, sink, report, skip_invalid, id_key, bar)
            for batch in _batches(ray, ds):
                collector.add_batch(batch)
            collector.finish()
            sink.close()
    finally:
        (
            context.execution_options.preserve_order,
            context.enable_progress_bars,
            context.target_max_block_size,
            context.print_on_execution_start,
        ) = saved
    report.seconds = time.perf_counter() - start
    return report


def _batches(ray, ds) -> Iterator[Dict[str, Any]]:
    """The dataset's output batches; an OSError or ValueError raised in an
    actor's batch is raised as itself, so that it reads as ``predict``'s would."""
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, (OSError, ValueError)):
            raise cause from None
        raise
