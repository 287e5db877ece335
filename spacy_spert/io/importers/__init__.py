"""Import entity and relation annotations from annotation tools to ``.spacy``.

Three formats, next to the SpERT JSON of :mod:`spacy_spert.io.spert_json`,
each read by its own module (whose docstring describes the format):

``prodigy``
    Prodigy's ``rel.manual`` annotations, a JSONL file (:mod:`.prodigy`).
``brat``
    A folder of brat standoff ``.txt`` + ``.ann`` files, or one ``.ann``
    file (:mod:`.brat`).
``label-studio``
    Label Studio's JSON export (:mod:`.label_studio`).

Each reader yields the annotated texts as :class:`~.common.Item` records;
:mod:`.common` turns them into Docs by the policies the three formats share
(offsets mapped onto tokens, sentence splitting, skipped texts, what the
output Docs hold, one-line errors), described in its docstring.
"""

from pathlib import Path
from typing import Any, List, Optional, Tuple

from spacy.tokens import Doc, DocBin

from ...relations import install_extensions
from ..files import check_output_path, write_atomic
from ..spert_json import read_types
from ..validation import ConversionError, PathLike
from .brat import read_brat
from .common import ImportReport, Pipeline, item_docs
from .label_studio import read_label_studio
from .prodigy import read_prodigy

__all__ = ["FORMATS", "ImportReport", "import_docs", "import_file"]

FORMATS = ("prodigy", "brat", "label-studio")


def import_docs(
    fmt: str,
    input_path: PathLike,
    *,
    lang: Optional[str] = None,
    model: Optional[str] = None,
    spans_key: str = "sc",
    strict: bool = False,
    split_sentences: bool = False,
    types_path: Optional[PathLike] = None,
    text_key: str = "text",
    predictions: bool = False,
) -> Tuple[List[Doc], ImportReport]:
    """Read annotations of an annotation tool into Docs (see the docstrings of
    the modules :mod:`.prodigy`, :mod:`.brat` and :mod:`.label_studio` for the
    formats, of :mod:`.common` for the policies they share).

    fmt (str): "prodigy", "brat" or "label-studio".
    input_path (str / Path): A Prodigy JSONL file, a brat folder (or .ann
        file) or a Label Studio JSON export.
    lang (Optional[str]): Language code of a blank tokenizer (default "en").
    model (Optional[str]): A pipeline (name or path) whose tokenizer and
        sentence splitter to use instead; excludes ``lang``.
    spans_key (str): The span group for the entities.
    strict (bool): Make an entity that is not on token boundaries an error
        instead of expanding it to whole tokens.
    split_sentences (bool): One Doc per sentence instead of per text.
    types_path (Optional[str / Path]): A SpERT types file; entity and relation
        types not in it are errors.
    text_key (str): Label Studio: the key of the text in a task's ``data``.
    predictions (bool): Label Studio: import a task that has predictions and
        no annotation from its first prediction (else it is skipped and counted).
    RETURNS (Tuple[List[Doc], ImportReport]): The Docs and what was imported,
        skipped and left out.
    RAISES: ConversionError (a ValueError) for invalid data, naming the file,
        record or line and field; ValueError for an unknown format, both
        ``lang`` and ``model`` or no docs to write; OSError if a file cannot
        be read.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    if not isinstance(spans_key, str) or not spans_key:
        raise ValueError(f"spans_key must be a non-empty string, got {spans_key!r}")
    install_extensions()
    types = read_types(types_path) if types_path is not None else None
    pipeline = Pipeline(lang, model, split_sentences)
    path, source = Path(input_path), str(input_path)
    report = ImportReport()
    if fmt == "prodigy":
        items = read_prodigy(path, source, report, pipeline.vocab)
    elif fmt == "brat":
        items = read_brat(path, report)
    else:
        items = read_label_studio(path, source, report, text_key, predictions)
    docs = [doc for item in items for doc in item_docs(item, pipeline, spans_key, strict, types, report)]
    if not docs:
        skipped = ", ".join(f"{n} {what}" for what, n in sorted(report.skipped.items())) or "the input is empty"
        raise ConversionError(source, f"nothing to import ({skipped})")
    return docs, report


def import_file(fmt: str, input_path: PathLike, output_path: PathLike, **options: Any) -> ImportReport:
    """Import annotations (see :func:`import_docs`, which takes the same
    options) and write them as a ``.spacy`` DocBin with user data.

    All input is read and checked before anything is written; the file is
    written to a temporary file and renamed into place, so on any error no
    output file, partial or otherwise, is left (an existing one is left
    unchanged).

    RETURNS (ImportReport): What was written, skipped and left out.
    RAISES: ValueError if the output is one of the inputs (before anything is read).
    """
    check_output_path(output_path, input_path, read_suffixes=(".ann", ".txt"))  # brat: a folder of both
    check_output_path(output_path, options.get("types_path"), options.get("model"))
    docs, report = import_docs(fmt, input_path, **options)
    write_atomic(DocBin(store_user_data=True, docs=docs).to_bytes(), Path(output_path))
    return report
