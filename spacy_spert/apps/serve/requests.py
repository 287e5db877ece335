"""Reading the requests of the ``serve`` API: the JSON body of ``POST
/extract`` (:func:`parse_extract_body`), the page's form
(:func:`parse_form_text`), the texts' checks and the limits, and the 4xx
errors they give (:class:`RequestError`)."""

import json
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qs

from ...io.validation import JSONValueError, check_unicode, json_type, loads_json

__all__ = [
    "BODY_OVERHEAD",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEAD_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_FORM_FIELDS",
    "DEFAULT_MAX_TEXTS",
    "FORM_BYTES_PER_CHAR",
    "ClientGone",
    "Item",
    "RequestError",
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
        check_unicode(text)
    except JSONValueError as e:
        raise RequestError(422, f"{where} is not valid Unicode: {e}") from None


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body, read by
    :func:`~spacy_spert.io.validation.loads_json` as every input is: 400 if
    empty, not UTF-8, not JSON, NaN or Infinity, or nested too deeply; 422 for
    a number out of range or an unpaired surrogate, naming the field."""
    if not body.strip():
        raise RequestError(400, 'the request body is empty: send JSON, e.g. {"text": "..."}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the request body is not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return loads_json(text)
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the request body is not JSON ({e})") from None
    except JSONValueError as e:
        if e.syntax:
            raise RequestError(400, f"the request body is not JSON this server reads ({e})") from None
        raise RequestError(422, f"the request body has a value this server cannot carry back: {e}") from None


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
