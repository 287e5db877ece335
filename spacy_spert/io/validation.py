"""What every reader of input data shares: the one-line error that names the
file, record or line and field (:class:`ConversionError`), and the small
helpers that describe a JSON value in such a message."""

import json
import math
import os
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]


class ConversionError(ValueError):
    """A problem with input data, described in one line.

    For a field of a record the message reads
    ``"{source}: record {index}: field '{field}': {problem}"``, e.g.
    ``"conll04_train.json: record 12: field 'entities[2].end': end (3) must be
    greater than start (3)"``; for a problem with a whole file it reads
    ``"{source}: {problem}"``.

    For line-based input (JSONL, brat ``.ann`` files) ``line`` takes the place
    of ``record``: ``"{source}: line {line}: field '{field}': {problem}"``.
    A record with an id of its own (a Label Studio task's ``id``, which its
    interface shows) reads ``"record 3 (id 57)"``.

    source (str): The file (path as given) or other input the data came from.
    problem (str): What is wrong.
    record (Optional[int]): The index of the record in the file, if any.
    line (Optional[int]): The line number (from 1) in the file, if any.
    field (Optional[str]): The field within the record (or file), if any,
        e.g. ``"entities[2].end"``.
    record_id (Optional[str]): The record's own id, if any.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        record: Optional[int] = None,
        line: Optional[int] = None,
        field: Optional[str] = None,
        record_id: Optional[str] = None,
    ) -> None:
        self.source = str(source)
        self.problem = problem
        self.record = record
        self.line = line
        self.field = field
        self.record_id = record_id
        parts = [self.source]
        if record is not None:
            parts.append(f"record {record}" + (f" (id {record_id})" if record_id is not None else ""))
        if line is not None:
            parts.append(f"line {line}")
        if field is not None:
            parts.append(f"field '{field}'")
        parts.append(problem)
        # Always one line, whatever the data contained.
        super().__init__(" ".join(": ".join(parts).split("\n")))


def show(value: Any, limit: int = 40) -> str:
    """A short one-line JSON rendering of a value, for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of a value's type ("object", "list", "string", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def is_int(value: Any) -> bool:
    """Whether a JSON value is an integer (``true`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def decode_error_place(error: UnicodeDecodeError) -> str:
    """Where a UTF-8 decoding error is, for a message: ``"line 3, byte 7 of
    the line (0xe9: invalid continuation byte)"``.

    error (UnicodeDecodeError): The error of decoding a whole file.
    RETURNS (str): The line (from 1), the byte in it (from 1), the byte and why.
    """
    data, start = bytes(error.object), error.start
    line = data.count(b"\n", 0, start) + 1
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return f"line {line}, byte {column} of the line (0x{data[start]:02x}: {error.reason})"


def load_json(path: PathLike, source: str) -> Any:
    """Read and parse a JSON file.

    path: The file to read. source (str): The name used in error messages.
    RETURNS: The parsed JSON value.
    RAISES: OSError if the file cannot be read; ConversionError if it is not
        UTF-8 JSON.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConversionError(source, f"not valid UTF-8 text: {decode_error_place(e)}") from None
    try:
        return loads_json(text)
    except json.JSONDecodeError as e:
        raise ConversionError(source, f"not valid JSON: {e}") from None
    except ValueError as e:  # loads_json's checks
        raise ConversionError(source, f"not JSON this reads: {e}") from None


# Python's default limit of int(str) (sys.get_int_max_str_digits()): a longer
# integer fails to parse, or the record that carries it fails to be written.
MAX_INT_DIGITS = 4300
# Objects and lists in objects and lists: records need a few levels; writing a
# deeper value back recurses as reading does.
MAX_JSON_DEPTH = 100


class JSONValueError(ValueError):
    """JSON text that :func:`loads_json` refuses, described in one line:
    ``"{where}: {reason}"``, or the reason alone for the whole value.

    reason (str): What is wrong, e.g. "an integer of 5000 digits, more than
        the limit of 4300".
    where (str): The value's place, e.g. ``"texts[0].meta"`` or ``"a field
        name in texts[0]"`` ("": the whole text, or not known).
    syntax (bool): The text is not JSON as this reads it (NaN, Infinity,
        nested too deeply), rather than JSON with a value it cannot carry (a
        number out of range, an unpaired surrogate); a server answers 400
        for the one and 422 for the other.
    """

    def __init__(self, reason: str, where: str = "", syntax: bool = False) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason, self.where, self.syntax = reason, where, syntax


def _refuse_constant(name: str) -> Any:
    raise JSONValueError(f"{name} is not a JSON value", syntax=True)


def _checked_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise JSONValueError(f"an integer of {n} digits, more than the limit of {MAX_INT_DIGITS}")
    return int(digits)


def _checked_float(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise JSONValueError(f"the number {show(number)} is out of range (beyond about 1.8e308)")
    return value


def _too_deep(max_depth: int) -> JSONValueError:
    return JSONValueError(f"nested too deeply: more than {max_depth} levels of objects and lists", syntax=True)


def loads_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for input that is carried into JSON output: refuses
    NaN and Infinity, numbers out of float range, integers over
    :data:`MAX_INT_DIGITS` digits, values nested deeper than ``max_depth``,
    and strings or field names with an unpaired surrogate (``"\\ud800"``),
    which no UTF-8 output can hold.

    text (str): The JSON text.
    max_depth (int): The most levels of objects and lists.
    RETURNS (Any): The value.
    RAISES: json.JSONDecodeError (a ValueError) for text that is not JSON;
        JSONValueError for JSON it refuses, naming the first such value in
        document order.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_checked_int, parse_float=_checked_float)
    except RecursionError:
        raise _too_deep(max_depth) from None
    # Iterative: a recursive walk could reach the recursion limit first. A
    # place is (parent's place, key or index), spelt out by _path only for an error.
    stack: List[Tuple[Any, Any, int]] = [(value, None, 1)]
    while stack:
        item, place, depth = stack.pop()
        if isinstance(item, str):
            problem = _unicode_problem(item)
            if problem:
                raise JSONValueError(problem, _path(place))
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise _too_deep(max_depth)
            if isinstance(item, dict):
                for key in item:
                    problem = _unicode_problem(key)
                    if problem:
                        raise JSONValueError(problem, f"a field name in {_path(place) or 'the top level'}")
                children = [(v, (place, k), depth + 1) for k, v in item.items()]
            else:
                children = [(v, (place, i), depth + 1) for i, v in enumerate(item)]
            stack.extend(reversed(children))  # popped in document order: the first problem is named
    return value


def _path(place: Any) -> str:
    """``"texts[0].meta"`` for the place (((None, "texts"), 0), "meta")."""
    parts: List[str] = []
    while place is not None:
        place, key = place
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".")


def check_unicode(text: str, where: str = "") -> None:
    """Raise JSONValueError (naming ``where``) if ``text`` has an unpaired
    surrogate, which JSON's ``\\ud800`` escapes allow and no UTF-8 output
    can hold."""
    problem = _unicode_problem(text)
    if problem:
        raise JSONValueError(problem, where)


def _unicode_problem(text: str) -> Optional[str]:
    """What makes ``text`` impossible to write as UTF-8 (an unpaired
    surrogate), or None. (The place of a problem is spelt out only then.)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"a string with an unpaired surrogate U+{ord(text[e.start]):04X} (at character {e.start})"
    return None
