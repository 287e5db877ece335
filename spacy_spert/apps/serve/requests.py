"""Reading the requests of the ``serve`` API: the JSON body of ``POST
/extract`` (:func:`parse_extract_body`), the page's form
(:func:`parse_form_text`), the texts' checks and the limits, and the 4xx
errors they give (:class:`RequestError`)."""

import json
import math
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qs

from ...io.validation import json_type

__all__ = [
    "BODY_OVERHEAD",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_FORM_FIELDS",
    "DEFAULT_MAX_TEXTS",
    "FORM_BYTES_PER_CHAR",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "ClientGone",
    "Item",
    "RequestError",
    "check_json_value",
    "check_text",
    "decode_body",
    "parse_extract_body",
    "parse_form_text",
]

DEFAULT_MAX_CHARS = 100_000
DEFAULT_MAX_TEXTS = 64
DEFAULT_MAX_FORM_FIELDS = 100
# Seconds for a request's head to arrive, for its body after the head, and an
# idle connection's life after a response (uvicorn's default).
DEFAULT_HEAD_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
# What a JSON body may hold beyond its texts' characters (each at most 6 bytes: \uXXXX).
BODY_OVERHEAD = 64 * 1024
# A form's bytes per character of its text: a 4-byte UTF-8 character is %XX four times.
FORM_BYTES_PER_CHAR = 12
# Python's default limit of int(str) (sys.get_int_max_str_digits()): a longer
# integer would fail to parse, or the record that carries it to be written.
MAX_INT_DIGITS = 4300
# Objects and lists in objects and lists: a request needs 3 (texts, an object, a
# field); deeper values would be carried into records and written back, and
# writing recurses like reading.
MAX_JSON_DEPTH = 100
# A text to tag and the fields its record carries.
Item = Tuple[str, Dict[str, Any]]


class ClientGone(Exception):
    """The client disconnected before its request was answered (nobody reads an answer: the app answers 499)."""


class RequestError(ValueError):
    """A request the API answers with a 4xx status.

    status (int): The HTTP status. detail (str): What is wrong, in one line.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def check_text(text: Any, where: str, max_chars: int) -> str:
    """A text of a request, checked: a string of at most ``max_chars``
    characters, not empty or whitespace only, without unpaired surrogates.

    text (Any): The value sent. where (str): What it is, for the error
        (e.g. "field 'text'"). max_chars (int): The most characters.
    RETURNS (str): The text.
    RAISES: RequestError (413 over the limit, else 422).
    """
    if not isinstance(text, str):
        raise RequestError(422, f"{where} must be a string, got {json_type(text)}")
    if len(text) > max_chars:
        raise RequestError(413, f"{where} has {len(text)} characters, more than this server's limit of {max_chars}")
    if not text.strip():
        raise RequestError(422, f"{where} is {'empty' if not text else 'whitespace only'}: send some text")
    _check_unicode(text, where)
    return text


def _check_unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RequestError(
            422,
            f"{where} is not valid Unicode: an unpaired surrogate U+{ord(text[e.start]):04X} at character {e.start}",
        ) from None


def check_json_value(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON value of a request, checked: nested at most ``max_depth``
    levels, and every string and field name valid Unicode (JSON's ``\\ud800``
    escapes allow unpaired surrogates, which no UTF-8 answer can hold).

    value (Any): The value, as ``json.loads`` gives it.
    max_depth (int): The most levels of objects and lists.
    RETURNS (Any): The value.
    RAISES: RequestError (400 nested too deeply, 422 an unpaired surrogate)
        naming the field.
    """
    # Iterative: a recursive walk could hit the recursion limit before the depth check.
    stack: List[Tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_unicode(item, _where(path, depth))
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise RequestError(
                    400, f"the request body is nested too deeply: more than {max_depth} levels of objects and lists"
                )
            if isinstance(item, dict):
                for key in item:
                    _check_unicode(key, f"a field name in {_where(path, depth)}")
                children = [(v, f"{path}.{k}" if path else k, depth + 1) for k, v in item.items()]
            else:
                children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
            stack.extend(reversed(children))  # popped in document order: the first problem is named
    return value


def _where(path: str, depth: int) -> str:
    # As check_text names them: "field 'id'" at the top, "texts[1].id" below.
    if not path:
        return "the request body"
    return f"field '{path}'" if depth == 2 and not path.startswith("[") else path


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body, checked with :func:`check_json_value`
    (400 if empty, not UTF-8, not JSON or nested too deeply; 422 for a number
    out of range or an unpaired surrogate)."""
    if not body.strip():
        raise RequestError(400, 'the request body is empty: send JSON, e.g. {"text": "..."}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the request body is not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(text, parse_constant=_not_json, parse_int=_parse_int, parse_float=_parse_float)
    except RequestError:
        raise
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the request body is not JSON ({e})") from None
    except RecursionError:
        raise RequestError(400, "the request body is not JSON this server reads (nested too deeply)") from None
    except ValueError as e:  # a number int() or float() refuses beyond the checks below
        raise RequestError(422, f"the request body has a number this server cannot read ({e})") from None
    return check_json_value(value)


def _not_json(name: str) -> Any:
    raise RequestError(400, f"the request body is not JSON ({name} is not a JSON value)")


def _parse_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise RequestError(
            422,
            f"the request body has an integer too large: {n} digits, more than this server's limit of {MAX_INT_DIGITS}",
        )
    return int(digits)


def _parse_float(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        shown = number if len(number) <= 40 else number[:37] + "..."
        raise RequestError(
            422, f"the request body has a number out of range: {shown} is beyond the largest float (about 1.8e308)"
        )
    return value


def parse_extract_body(
    body: bytes, max_chars: int = DEFAULT_MAX_CHARS, max_texts: int = DEFAULT_MAX_TEXTS
) -> Tuple[bool, List[Item]]:
    """Read a ``POST /extract`` body.

    body (bytes): The request body.
    max_chars (int): The most characters of one text.
    max_texts (int): The most texts of one request.
    RETURNS (Tuple[bool, List[Tuple[str, Dict]]]): Whether the request was one
        text (``{"text"}``, answered with one record) and (text, fields) per
        text: its object (a JSONL line of ``predict``; ``{}`` for a string),
        whose fields the record carries.
    RAISES: RequestError naming the problem and its status.
    """
    obj = decode_body(body)
    if not isinstance(obj, dict):
        raise RequestError(422, f'expected a JSON object {{"text": ...}} or {{"texts": [...]}}, got {json_type(obj)}')
    if ("text" in obj) == ("texts" in obj):
        fields = ", ".join(repr(k) for k in obj) or "none"
        raise RequestError(
            422,
            "expected either a field 'text' (a string) or a field 'texts' (a list of strings or "
            f"of objects with a 'text'), got fields: {fields}",
        )
    if "text" in obj:
        text = check_text(obj["text"], "field 'text'", max_chars)
        return True, [(text, obj)]
    texts = obj["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, f"field 'texts' must be a list, got {json_type(texts)}")
    if not texts:
        raise RequestError(422, "field 'texts' is an empty list")
    if len(texts) > max_texts:
        raise RequestError(413, f"field 'texts' has {len(texts)} texts, more than this server's limit of {max_texts}")
    items: List[Item] = []
    for i, entry in enumerate(texts):
        if isinstance(entry, dict):
            if "text" not in entry:
                raise RequestError(422, f"texts[{i}] has no field 'text'")
            items.append((check_text(entry["text"], f"texts[{i}].text", max_chars), entry))
        else:
            items.append((check_text(entry, f"texts[{i}]", max_chars), {}))
    return False, items


def parse_form_text(body: bytes, max_fields: int = DEFAULT_MAX_FORM_FIELDS) -> str:
    """The text of the page's form (``application/x-www-form-urlencoded``,
    field ``text``; CRLF line ends as LF), not yet checked (see
    :func:`check_text`).

    body (bytes): The request body.
    max_fields (int): The most fields of the form (the page sends one).
    RETURNS (str): The text ("" if the form has none).
    RAISES: RequestError (400 not UTF-8, 413 too many fields).
    """
    try:
        query = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the form is not UTF-8 ({e.reason} at byte {e.start})") from None
    n_fields = query.count("&") + 1  # as parse_qs counts them
    if n_fields > max_fields:
        raise RequestError(
            413,
            f"the form has {n_fields} fields, more than this server's limit of {max_fields} "
            "(this page sends one, 'text')",
        )
    try:
        form = parse_qs(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the form is not UTF-8 (a %-escape is {e.reason})") from None
    return form.get("text", [""])[0].replace("\r\n", "\n")
