"""Tag a corpus with a trained pipeline and write what was found: the library
side of ``python -m spacy_spert predict``.

Input (the kind is chosen by the path):

- ``*.jsonl``: one JSON object per line with the text under ``text_key``
  (``"text"``); every other field is carried through to the output. Blank
  lines are not docs and are passed over.
- ``*.spacy``: a DocBin; its docs keep their tokenization (the pipeline's
  tokenizer does not run). Fields carried by an earlier ``predict`` (in
  ``doc.user_data["input_fields"]``) are carried on.
- a folder: every ``*.txt`` file below it (recursively, sorted by path) is
  one doc, with its path relative to the folder as the field ``"file"``.
- any other file: plain UTF-8 text, the whole file one doc (field ``"file"``).
- With ``lines=True`` each line of a text file (or of each ``.txt`` file of a
  folder) is one doc, with the fields ``"file"`` and ``"line"`` (1-based);
  empty lines are docs too, so that output line k is input line k.

Output (``output_format``, by default from the suffix: ``.spacy`` or JSONL;
``label-studio`` only when asked for):

- JSONL: one line per input doc, in input order: the carried fields, the text
  under ``text_key``, ``"entities"`` and ``"relations"`` as
  :func:`~spacy_spert.io.records.doc_to_record` gives them (input fields with those two names are
  replaced).
- ``.spacy``: a DocBin with user data (``doc._.relations``, the carried fields
  in ``doc.user_data["input_fields"]``) and without the transformer's output
  (``doc._.trf_data``). The DocBin is built in memory and written at the end.
- ``label-studio``: a JSON list of Label Studio tasks, one per input doc, in
  input order, each with its prediction as pre-annotations (Label Studio
  imports the file as it is): ``{"data": {...the carried fields, "text": ...},
  "predictions": [{"model_version", "score", "result"}]}``, as
  :func:`~spacy_spert.io.label_studio_tasks.record_to_task` writes it. The
  names, labels and text key come from a labeling config (``label_config``)
  or are Label Studio's defaults; labels the config lacks are left out and
  listed in the report's ``warnings``. ``import label-studio --predictions``
  reads the file back to the same entities and relations.

Every input doc gives exactly one output doc, empty and whitespace-only texts
included (with no entities). An invalid input line or file (not UTF-8, not
JSON, JSON that could not be written back (NaN, Infinity, huge numbers, deep
nesting, unpaired surrogates), not an object, no text field, a text that is
not a string, a text longer than ``max_length``) is an
:class:`~spacy_spert.io.jsonl.InvalidInput` error that names the file and line; with
``skip_invalid=True`` it is left out, and listed in the report. The output
is written to a temporary file next to it and renamed into place at the end
(:func:`~spacy_spert.io.files.atomic_output`), so an error or Ctrl-C leaves no
output file.

Long texts: a text over ``max_length`` characters (default: the pipeline's
``nlp.max_length``, spaCy's 1,000,000 unless changed) is an invalid line, not
spaCy's error E088. The windows of the transformer bound the model's work per
window, not the memory of a doc: the transformer's output and spert's
candidates are kept for the whole doc, about 4 KB a character with a
MiniLM-L6 encoder (more with wider ones), so a limit stays;
``max_length`` raises (or lowers) it.

Throughput: :func:`pipe_by_length` reads ``buffer_size`` docs at a time,
runs them through ``nlp.pipe`` sorted by length (so the transformer's batches
hold texts of similar length and little padding) and restores the input order
before they are written. Memory stays bounded by the buffer: inputs are read,
and outputs converted and written, as a stream.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.util import minibatch

from ..io.files import atomic_output, check_output_path
from ..io.jsonl import InvalidInput, input_items, valid_items
from ..io.label_studio_tasks import DEFAULT_CONFIG, LabelConfig, model_labels, read_label_config, record_to_task
from ..io.label_studio_tasks import model_version as pipeline_version
from ..io.records import FIELDS_KEY, doc_to_record, output_record, spert_spans_key

__all__ = ["PredictReport", "pipe_by_length", "predict"]

PathLike = Union[str, Path]
T = TypeVar("T")
FORMATS = ("jsonl", "spacy", "label-studio")
DEFAULT_BATCH_SIZE = 64
DEFAULT_BUFFER_SIZE = 2048


@dataclass
class PredictReport:
    """What :func:`predict` did.

    n_docs (int): Docs written (one per valid input doc).
    n_entities, n_relations (int): Entities and relations written.
    skipped (List[InvalidInput]): The invalid lines or files left out
        (``skip_invalid=True``), in input order.
    seconds (float): Wall time from the first read to the renamed output
        (loading the pipeline not included).
    warnings (List[str]): ``label-studio`` output: how the model's labels
        map onto the labeling config's (labels left out, labels renamed).
    """

    n_docs: int = 0
    n_entities: int = 0
    n_relations: int = 0
    skipped: List[InvalidInput] = field(default_factory=list)
    seconds: float = 0.0
    warnings: List[str] = field(default_factory=list)

    @property
    def docs_per_second(self) -> float:
        return self.n_docs / self.seconds if self.seconds > 0 else 0.0


def _length(text_or_doc: Union[str, Doc]) -> int:
    return len(text_or_doc) if isinstance(text_or_doc, str) else len(text_or_doc.text)


def _doc_and_context(doc: Doc, context: Any) -> Tuple[Doc, Any]:
    return doc, context


def pipe_by_length(
    nlp: Language,
    items: Iterable[Tuple[Union[str, Doc], Any]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    n_process: int = 1,
    convert: Optional[Callable[[Doc, Any], T]] = None,
) -> Iterator[T]:
    """``nlp.pipe`` over (text, context) pairs with length-sorted batches, in
    input order: read ``buffer_size`` items, run them through one ``nlp.pipe``
    call sorted by text length (ties in input order), and yield each result in
    the order of the items. Batches then hold texts of similar length, so the
    transformer pads little. One ``nlp.pipe`` call serves the whole stream,
    so ``n_process > 1`` starts its workers once.

    Each context travels with its doc (``nlp.pipe(as_tuples=True)``), so a doc
    that the pipeline leaves out (an error handler that skips failing
    batches) is an error, not a shifted output. Results wait for their turn
    in a buffer of at most ``buffer_size`` entries, so pass ``convert`` to
    keep what is needed of a doc (e.g. :func:`~spacy_spert.io.records.doc_to_record`) rather than the
    doc with its transformer output.

    nlp (Language): The pipeline.
    items (Iterable[Tuple[Union[str, Doc], Any]]): (text or Doc, context) pairs.
    batch_size (int): The batch size of ``nlp.pipe``.
    buffer_size (int): Items sorted together; 1 is plain ``nlp.pipe``.
    n_process (int): Processes of ``nlp.pipe``.
    convert (Optional[Callable[[Doc, Any], T]]): Called with each doc and its
        context in the order docs come out of the pipeline; default:
        ``(doc, context)``.
    YIELDS (T): ``convert(doc, context)`` in input order.
    RAISES: ValueError if the pipeline returns no doc for an item.
    """
    to_output: Callable[[Doc, Any], Any] = convert if convert is not None else _doc_and_context
    n_read = 0

    def sorted_items() -> Iterator[Tuple[Union[str, Doc], Tuple[int, Any]]]:
        nonlocal n_read
        for chunk in minibatch(enumerate(items), buffer_size):
            n_read += len(chunk)
            chunk.sort(key=lambda item: (_length(item[1][0]), item[0]))
            for i, (text, context) in chunk:
                yield text, (i, context)

    pending: Dict[int, T] = {}
    next_index = 0
    docs = nlp.pipe(sorted_items(), batch_size=batch_size, n_process=n_process, as_tuples=True)
    try:
        for doc, (i, context) in docs:
            if i // buffer_size > next_index // buffer_size:  # next_index's buffer is done without it
                break
            pending[i] = to_output(doc, context)
            while next_index in pending:
                yield pending.pop(next_index)
                next_index += 1
    finally:
        docs.close()  # type: ignore[attr-defined]  # nlp.pipe gives a generator
    if next_index < n_read:
        raise ValueError(
            f"the pipeline returned no doc for input doc {next_index + 1} (does an error handler skip failing batches?)"
        )


# Writing ---------------------------------------------------------------------


def predict(
    model: Union[PathLike, Language],
    input_path: PathLike,
    output_path: PathLike,
    *,
    output_format: Optional[str] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    n_process: int = 1,
    gpu_id: int = -1,
    text_key: str = "text",
    lines: bool = False,
    skip_invalid: bool = False,
    spans_key: Optional[str] = None,
    progress: Optional[bool] = None,
    quantize: bool = False,
    max_length: Optional[int] = None,
    label_config: Optional[Union[PathLike, LabelConfig]] = None,
    model_version: Optional[str] = None,
) -> PredictReport:
    """Tag every doc of ``input_path`` with a pipeline and write the results
    to ``output_path`` (see the module docstring for the formats).

    model (str / Path / Language): A pipeline directory, an installed package
        name, or a loaded pipeline.
    input_path (str / Path): A ``.jsonl`` file, a ``.spacy`` file, a text file
        or a folder of ``.txt`` files.
    output_path (str / Path): The output file; replaced only at the end.
    output_format (Optional[str]): "jsonl", "spacy" or "label-studio";
        default: "spacy" for a ``.spacy`` output path, else "jsonl".
    batch_size (int): Docs per ``nlp.pipe`` batch.
    buffer_size (int): Docs sorted by length together (1: input order).
    n_process (int): Processes for ``nlp.pipe`` (-1: one per CPU).
    gpu_id (int): The GPU for a pipeline loaded here, -1 for the CPU.
    text_key (str): The JSONL field with the text; also the output's text field.
    lines (bool): Text input: one doc per line instead of per file.
    skip_invalid (bool): Leave out invalid lines and files (listed in the
        report) instead of stopping at the first.
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    progress (Optional[bool]): Show a progress bar with docs/s on stderr
        (None: only when stderr is a terminal).
    quantize (bool): Quantize the encoder's linear layers to int8 first, for
        faster CPU inference (:func:`spacy_spert.transformer.quantize.quantize`; CPU only,
        and it changes a pipeline passed in).
    max_length (Optional[int]): The longest text in characters; longer ones
        are invalid lines (default: the pipeline's ``nlp.max_length``).
    label_config (Optional[str / Path / LabelConfig]): ``label-studio``
        output: the project's labeling config (an XML file, or parsed), whose
        names, labels and text key the tasks use (default: Label Studio's
        defaults and the model's labels).
    model_version (Optional[str]): ``label-studio`` output: the predictions'
        ``model_version`` (default: ``LANG_NAME-VERSION`` of the pipeline's meta).
    RETURNS (PredictReport): Counts, the skipped lines and the time.
    RAISES: InvalidInput (a ValueError) for an invalid line or file unless
        ``skip_invalid``; ValueError for invalid arguments; OSError if a file
        cannot be read or written. No output file is left on any error.
    """
    from tqdm import tqdm

    check_output_path(output_path, input_path, read_suffixes=(".txt",))  # a folder: its .txt files are read
    check_output_path(output_path, None if isinstance(model, Language) else model)
    config_path = None if isinstance(label_config, LabelConfig) else label_config
    check_output_path(output_path, config_path)
    output_format = output_format or ("spacy" if Path(output_path).suffix == ".spacy" else "jsonl")
    if output_format not in FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; expected one of: {', '.join(FORMATS)}")
    if output_format != "label-studio" and (label_config is not None or model_version is not None):
        raise ValueError("a labeling config and a model version are for the label-studio output format")
    config = read_label_config(config_path) if config_path is not None else DEFAULT_CONFIG
    if isinstance(label_config, LabelConfig):
        config = label_config
    if batch_size < 1 or buffer_size < 1:
        raise ValueError(f"batch size and buffer size must be at least 1, got {batch_size} and {buffer_size}")
    if n_process == 0 or n_process < -1:
        raise ValueError(f"the number of processes must be positive (or -1: one per CPU), got {n_process}")
    if quantize and gpu_id >= 0:
        raise ValueError(f"--quantize is for CPU inference; it cannot run on GPU {gpu_id} (leave out --gpu-id)")
    if max_length is not None and max_length < 1:
        raise ValueError(f"the longest text (--max-length) must be at least 1 character, got {max_length}")
    nlp = model if isinstance(model, Language) else _load(model, gpu_id)
    limit = max_length if max_length is not None else nlp.max_length
    if quantize:
        from ..transformer.quantize import quantize as quantize_pipeline

        quantize_pipeline(nlp)
    start = time.perf_counter()
    key = spans_key if spans_key is not None else spert_spans_key(nlp)
    report = PredictReport()
    version = model_version if model_version is not None else pipeline_version(nlp)
    if output_format == "label-studio" and config is not DEFAULT_CONFIG:
        report.warnings = config.check_labels(*model_labels(nlp))["warnings"]
    items = valid_items(input_items(Path(input_path), nlp, text_key, lines, limit), skip_invalid, report.skipped)

    def to_line(doc: Doc, fields: Dict[str, Any]) -> bytes:
        line = output_record(doc, fields, key, text_key)
        _count(report, line)
        return (json.dumps(line, ensure_ascii=False) + "\n").encode("utf8")

    def to_doc(doc: Doc, fields: Dict[str, Any]) -> Doc:
        _count(report, doc_to_record(doc, key))
        if doc.has_extension("trf_data"):
            doc._.trf_data = None
        if fields:
            doc.user_data[FIELDS_KEY] = {k: v for k, v in fields.items() if k != text_key}
        return doc

    def to_task(doc: Doc, fields: Dict[str, Any]) -> bytes:
        task = record_to_task(doc_to_record(doc, key), config, version, fields, text_key)
        result = task["predictions"][0]["result"]
        report.n_docs += 1
        report.n_entities += sum(1 for item in result if item["type"] == "labels")
        report.n_relations += sum(1 for item in result if item["type"] == "relation")
        return json.dumps(task, ensure_ascii=False).encode("utf8")

    convert = {"jsonl": to_line, "spacy": to_doc, "label-studio": to_task}[output_format]
    # The reader refuses texts over `limit`; spaCy's own check must not refuse
    # the others (a pipeline passed in gets its max_length back).
    saved_max_length, nlp.max_length = nlp.max_length, max(nlp.max_length, limit)
    try:
        outputs = pipe_by_length(
            nlp, items, batch_size=batch_size, buffer_size=buffer_size, n_process=n_process, convert=convert
        )
        disable = None if progress is None else not progress
        with atomic_output(output_path) as f, tqdm(outputs, unit="doc", disable=disable, leave=False) as bar:
            if output_format == "jsonl":
                f.writelines(bar)
            elif output_format == "label-studio":
                # a JSON list, as Label Studio imports it, written as a stream: one task a line
                f.write(b"[")
                for k, task in enumerate(bar):
                    f.write(b"\n" if k == 0 else b",\n")
                    f.write(task)
                f.write(b"\n]\n")
            else:
                f.write(DocBin(store_user_data=True, docs=bar).to_bytes())
    finally:
        nlp.max_length = saved_max_length
    report.seconds = time.perf_counter() - start
    return report


def _count(report: PredictReport, record: Dict[str, Any]) -> None:
    report.n_docs += 1
    report.n_entities += len(record["entities"])
    report.n_relations += len(record["relations"])


def _load(model: PathLike, gpu_id: int) -> Language:
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    return spacy.load(model)
