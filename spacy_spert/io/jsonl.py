"""Reading the input of ``predict`` (and of ``render`` and the Ray engine):
JSON lines, plain text files or folders of ``.txt`` files, and ``.spacy``
files, as (text or Doc, fields) items, with every bad line or file an
:class:`InvalidInput` that names the file and line. The input kinds are
described in :mod:`spacy_spert.apps.predict`.

This is the one JSON-lines reader: the Prodigy importer reads its lines with
:func:`json_lines` and :func:`parse_json_line` too, so that a line that is not
UTF-8, not JSON, or JSON that could not be written back (see
:func:`~spacy_spert.io.validation.loads_json`) reads the same everywhere.

A text longer than the limit a caller passes (``max_length``: the pipeline's
``nlp.max_length`` or predict's ``--max-length``) is an InvalidInput too, so
that it is named and can be skipped, rather than spaCy's error E088 (about
the parser's memory) for the whole run."""

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .records import FIELDS_KEY
from .validation import ConversionError, json_type, loads_json

__all__ = [
    "InvalidInput",
    "Item",
    "check_length",
    "input_items",
    "json_lines",
    "parse_json_line",
    "parse_jsonl_line",
    "read_jsonl",
    "read_spacy_file",
    "read_text_files",
    "valid_items",
]

# One input doc: its text (or a Doc with its tokenization) and the fields it carries.
Item = Tuple[Union[str, Doc], Dict[str, Any]]


class InvalidInput(ConversionError):
    """An input line or file that is not a doc, in one line:
    ``"{source}: line {line}: {problem}"`` (``"{source}: {problem}"`` for a
    whole file), as a :class:`~spacy_spert.io.validation.ConversionError`
    with a line gives it.

    source (str): The file. problem (str): What is wrong.
    line (Optional[int]): The line (1-based), if the problem is one line's.
    """

    def __init__(self, source: str, problem: str, line: Optional[int] = None) -> None:
        super().__init__(source, problem, line=line)


def _decode(data: bytes, source: str, line: Optional[int]) -> str:
    try:
        return data.decode("utf-8-sig" if line in (None, 1) else "utf-8")
    except UnicodeDecodeError as e:
        where = "of the line" if line is not None else "of the file"
        raise InvalidInput(
            source, f"not UTF-8 text (byte {e.start + 1} {where}, 0x{data[e.start]:02x}: {e.reason})", line
        ) from None


def check_length(text: str, source: str, line: Optional[int], max_length: Optional[int]) -> None:
    """Refuse a text longer than ``max_length`` characters with our own
    message (the pipeline's memory grows with a doc's length; spaCy's own
    error E088 speaks of the parser, and stops the whole run).

    text (str): The text. source (str): The file. line (Optional[int]): Its line.
    max_length (Optional[int]): The limit; None: no limit.
    RAISES: InvalidInput naming the file, line, length and limit.
    """
    if max_length is not None and len(text) > max_length:
        raise InvalidInput(
            source,
            f"a text of {len(text):,} characters, over the limit of {max_length:,} (the pipeline's max_length: "
            "memory grows with the length of a doc): split the text, or raise the limit (predict --max-length)",
            line,
        )


def parse_json_line(raw: bytes, source: str, line: int) -> Any:
    """The JSON value of one line (UTF-8; a byte order mark allowed on the
    first), read by :func:`~spacy_spert.io.validation.loads_json`.

    raw (bytes): The line as read. source (str): The file, for errors.
    line (int): The line number (1-based).
    RETURNS (Any): The value.
    RAISES: InvalidInput naming the file and line: not UTF-8 (with the byte),
        not JSON (with the column), or JSON this does not read (NaN,
        Infinity, numbers out of range, huge integers, deep nesting,
        unpaired surrogates).
    """
    text = _decode(raw, source, line).rstrip("\r\n")  # (a column past the end, not on a next line)
    try:
        return loads_json(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(source, f"not valid JSON: {e.msg} (column {e.colno})", line) from None
    except ValueError as e:  # loads_json's checks: what could not be written back as JSON
        raise InvalidInput(source, f"not JSON this reads: {e}", line) from None


def json_lines(path: Path) -> Iterator[Tuple[int, bytes]]:
    """The non-blank lines of a JSON-lines file with their numbers.

    path (Path): The file.
    YIELDS (Tuple[int, bytes]): (line number from 1, the line as read).
    """
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                yield n, raw


def parse_jsonl_line(
    raw: bytes, source: str, line: int, text_key: str = "text", max_length: Optional[int] = None
) -> Union[Item, InvalidInput]:
    """One JSONL line as a doc: (text, the whole object), or the
    :class:`InvalidInput` (returned, not raised) that says what is wrong with
    it. Blank lines are the caller's to pass over.

    raw (bytes): The line as read. source (str): The file, for errors.
    line (int): The line number (1-based). text_key (str): The text's field.
    max_length (Optional[int]): The longest text in characters (:func:`check_length`).
    RETURNS (Union[Item, InvalidInput]): The doc or the problem.
    """
    try:
        obj = parse_json_line(raw, source, line)
        if not isinstance(obj, dict):
            raise InvalidInput(source, f"expected a JSON object, got {json_type(obj)}", line)
        if text_key not in obj:
            raise InvalidInput(
                source, f"no field {text_key!r} (the text key; fields: {', '.join(obj) or 'none'})", line
            )
        if not isinstance(obj[text_key], str):
            raise InvalidInput(source, f"field {text_key!r} must be a string, got {json_type(obj[text_key])}", line)
        check_length(obj[text_key], source, line, max_length)
    except InvalidInput as e:
        return e
    return obj[text_key], obj


def read_jsonl(
    path: Path, text_key: str = "text", max_length: Optional[int] = None
) -> Iterator[Union[Item, InvalidInput]]:
    """The docs of a JSONL file: (text, the whole object) per non-blank line,
    or an :class:`InvalidInput` (yielded, not raised) for a bad line.

    path (Path): The file. text_key (str): The text's field.
    max_length (Optional[int]): The longest text in characters.
    YIELDS (Union[Item, InvalidInput]): A doc or the problem, per non-blank line.
    """
    source = str(path)
    for n, raw in json_lines(path):
        yield parse_jsonl_line(raw, source, n, text_key, max_length)


def read_text_files(
    path: Path, lines: bool = False, max_length: Optional[int] = None
) -> Iterator[Union[Item, InvalidInput]]:
    """The docs of a text file or of the ``*.txt`` files below a folder: one
    per file, or one per line with ``lines``.

    path (Path): A text file or a folder. lines (bool): One doc per line.
    max_length (Optional[int]): The longest text in characters.
    YIELDS (Union[Item, InvalidInput]): (text, {"file"[, "line"]}) or the
        problem (a file or line that is not UTF-8, or too long).
    RAISES: InvalidInput for a folder without ``.txt`` files.
    """
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise InvalidInput(str(path), "no .txt files in this folder")
        names = [p.relative_to(path).as_posix() for p in files]
    else:
        files, names = [path], [path.name]
    for file, name in zip(files, names):
        source = str(file)
        if not lines:
            try:
                text = _decode(file.read_bytes(), source, None)
                check_length(text, source, None, max_length)
            except InvalidInput as e:
                yield e
                continue
            yield text, {"file": name}
            continue
        with file.open("rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    text = _decode(raw, source, n).rstrip("\r\n")
                    check_length(text, source, n, max_length)
                except InvalidInput as e:
                    yield e
                    continue
                yield text, {"file": name, "line": n}


def read_spacy_file(path: Path, nlp: Language) -> Iterator[Item]:
    """The docs of a ``.spacy`` file with the fields an earlier ``predict``
    carried in their user data.

    path (Path): The file. nlp (Language): The pipeline whose vocab the docs get.
    YIELDS (Item): (doc, carried fields).
    """
    for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
        yield doc, dict(doc.user_data.get(FIELDS_KEY, {}))


def input_items(
    path: Path, nlp: Language, text_key: str, lines: bool, max_length: Optional[int] = None
) -> Iterator[Union[Item, InvalidInput]]:
    """The docs of any input of ``predict``, by its kind: a ``.jsonl`` file
    (:func:`read_jsonl`), a ``.spacy`` file (:func:`read_spacy_file`), else a
    text file or a folder (:func:`read_text_files`).

    path (Path): The input. nlp (Language): The pipeline (for ``.spacy`` files).
    text_key (str): The text's field in JSONL. lines (bool): Text input: one doc per line.
    max_length (Optional[int]): The longest text in characters (texts only:
        the docs of a ``.spacy`` file are made already).
    RETURNS (Iterator[Union[Item, InvalidInput]]): The docs, or the problems of bad lines and files.
    RAISES: FileNotFoundError for a missing path; ValueError for ``lines``
        with a JSONL or ``.spacy`` file.
    """
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if path.is_dir() or path.suffix not in (".jsonl", ".spacy"):
        return read_text_files(path, lines, max_length)
    if lines:
        raise ValueError(f"{path}: one doc per line (--lines) is for text files, not {path.suffix} files")
    return read_jsonl(path, text_key, max_length) if path.suffix == ".jsonl" else read_spacy_file(path, nlp)


def valid_items(
    items: Iterable[Union[Item, InvalidInput]], skip_invalid: bool, skipped: List[InvalidInput]
) -> Iterator[Item]:
    """The valid docs of ``items``: a problem is raised, or with
    ``skip_invalid`` appended to ``skipped`` and left out.

    items (Iterable[Union[Item, InvalidInput]]): Docs and problems, e.g. of :func:`input_items`.
    skip_invalid (bool): Leave problems out instead of raising them.
    skipped (List[InvalidInput]): Where the problems left out go.
    YIELDS (Item): The valid docs, in order.
    RAISES: InvalidInput, the first problem, unless ``skip_invalid``.
    """
    for item in items:
        if isinstance(item, InvalidInput):
            if not skip_invalid:
                raise item
            skipped.append(item)
        else:
            yield item
