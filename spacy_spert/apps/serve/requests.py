"""Reading the requests of the ``serve`` API: the JSON body of ``POST
/extract`` (:func:`parse_extract_body`), the texts' checks and the limits,
and the 4xx errors they give (:class:`RequestError`)."""
import json
from typing import Any, Dict, List, Tuple

from ...io.validation import json_type

__all__ = [
    "BODY_OVERHEAD",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_TEXTS",
    "Item",
    "RequestError",
    "check_text",
    "decode_body",
    "parse_extract_body",
]

DEFAULT_MAX_CHARS = 100_000
DEFAULT_MAX_TEXTS = 64
# What a JSON body may hold beyond its texts' characters (each at most 6 bytes: \uXXXX).
BODY_OVERHEAD = 64 * 1024
# A text to tag and the fields its record carries.
Item = Tuple[str, Dict[str, Any]]


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
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise RequestError(422, f"{where} is not valid Unicode: an unpaired surrogate U+{ord(ch):04X} at "
                                    f"character {i}")
    return text


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body (400 if empty, not UTF-8 or not JSON)."""
    if not body.strip():
        raise RequestError(400, 'the request body is empty: send JSON, e.g. {"text": "..."}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the request body is not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the request body is not JSON ({e})") from None
    except RecursionError:
        raise RequestError(400, "the request body is not JSON this server reads (nested too deeply)") from None


def _not_json(name: str) -> Any:
    raise RequestError(400, f"the request body is not JSON ({name} is not a JSON value)")


def parse_extract_body(body: bytes, max_chars: int = DEFAULT_MAX_CHARS,
                       max_texts: int = DEFAULT_MAX_TEXTS) -> Tuple[bool, List[Item]]:
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
        raise RequestError(422, "expected either a field 'text' (a string) or a field 'texts' (a list of strings or "
                                f"of objects with a 'text'), got fields: {fields}")
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
