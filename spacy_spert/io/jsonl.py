"""Reading the input of ``predict`` (and of ``render --model`` and the Ray
engine): JSON lines, plain text files or folders of ``.txt`` files, and
``.spacy`` files, as (text or Doc, fields) items, with every bad line or file
an :class:`InvalidInput` that names the file and line. The input kinds are
described in :mod:`spacy_spert.apps.predict`."""

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .records import FIELDS_KEY
from .validation import json_type, loads_json

__all__ = [
    "InvalidInput",
    "Item",
    "input_items",
    "parse_jsonl_line",
    "read_jsonl",
    "read_spacy_file",
    "read_text_files",
    "valid_items",
]

# One input doc: its text (or a Doc with its tokenization) and the fields it carries.
Item = Tuple[Union[str, Doc], Dict[str, Any]]


class InvalidInput(ValueError):
    """An input line or file that is not a doc, in one line:
    ``"{source}: line {line}: {problem}"`` (``"{source}: {problem}"`` for a
    whole file).

    source (str): The file. problem (str): What is wrong.
    line (Optional[int]): The line (1-based), if the problem is one line's.
    """

    def __init__(self, source: str, problem: str, line: Optional[int] = None) -> None:
        self.source, self.problem, self.line = str(source), problem, line
        where = f"{self.source}: line {line}" if line is not None else self.source
        super().__init__(" ".join(f"{where}: {problem}".split("\n")))


def _decode(data: bytes, source: str, line: Optional[int]) -> str:
    try:
        return data.decode("utf-8-sig" if line in (None, 1) else "utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(source, f"not UTF-8 text ({e})", line) from None


def parse_jsonl_line(raw: bytes, source: str, line: int, text_key: str = "text") -> Union[Item, InvalidInput]:
    """One JSONL line as a doc: (text, the whole object), or the
    :class:`InvalidInput` (returned, not raised) that says what is wrong with
    it. Blank lines are the caller's to pass over.

    raw (bytes): The line as read. source (str): The file, for errors.
    line (int): The line number (1-based). text_key (str): The text's field.
    RETURNS (Union[Item, InvalidInput]): The doc or the problem.
    """
    try:
        text = _decode(raw, source, line)
        try:
            obj = loads_json(text)
        except json.JSONDecodeError as e:
            raise InvalidInput(source, f"not valid JSON ({e})", line) from None
        except ValueError as e:  # loads_json's checks: what could not be written back as JSON
            raise InvalidInput(source, f"not JSON this reads: {e}", line) from None
        if not isinstance(obj, dict):
            raise InvalidInput(source, f"expected a JSON object, got {json_type(obj)}", line)
        if text_key not in obj:
            raise InvalidInput(
                source, f"no field {text_key!r} (the text key; fields: {', '.join(obj) or 'none'})", line
            )
        if not isinstance(obj[text_key], str):
            raise InvalidInput(source, f"field {text_key!r} must be a string, got {json_type(obj[text_key])}", line)
    except InvalidInput as e:
        return e
    return obj[text_key], obj


def read_jsonl(path: Path, text_key: str = "text") -> Iterator[Union[Item, InvalidInput]]:
    """The docs of a JSONL file: (text, the whole object) per non-blank line,
    or an :class:`InvalidInput` (yielded, not raised) for a bad line.

    path (Path): The file. text_key (str): The text's field.
    YIELDS (Union[Item, InvalidInput]): A doc or the problem, per non-blank line.
    """
    source = str(path)
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                yield parse_jsonl_line(raw, source, n, text_key)


def read_text_files(path: Path, lines: bool = False) -> Iterator[Union[Item, InvalidInput]]:
    """The docs of a text file or of the ``*.txt`` files below a folder: one
    per file, or one per line with ``lines``.

    path (Path): A text file or a folder. lines (bool): One doc per line.
    YIELDS (Union[Item, InvalidInput]): (text, {"file"[, "line"]}) or the
        problem (a file or line that is not UTF-8).
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
                yield _decode(file.read_bytes(), source, None), {"file": name}
            except InvalidInput as e:
                yield e
            continue
        with file.open("rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    text = _decode(raw, source, n).rstrip("\r\n")
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


def input_items(path: Path, nlp: Language, text_key: str, lines: bool) -> Iterator[Union[Item, InvalidInput]]:
    """The docs of any input of ``predict``, by its kind: a ``.jsonl`` file
    (:func:`read_jsonl`), a ``.spacy`` file (:func:`read_spacy_file`), else a
    text file or a folder (:func:`read_text_files`).

    path (Path): The input. nlp (Language): The pipeline (for ``.spacy`` files).
    text_key (str): The text's field in JSONL. lines (bool): Text input: one doc per line.
    RETURNS (Iterator[Union[Item, InvalidInput]]): The docs, or the problems of bad lines and files.
    RAISES: FileNotFoundError for a missing path; ValueError for ``lines``
        with a JSONL or ``.spacy`` file.
    """
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if path.is_dir() or path.suffix not in (".jsonl", ".spacy"):
        return read_text_files(path, lines)
    if lines:
        raise ValueError(f"{path}: one doc per line (--lines) is for text files, not {path.suffix} files")
    return read_jsonl(path, text_key) if path.suffix == ".jsonl" else read_spacy_file(path, nlp)


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
