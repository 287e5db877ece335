"""What text is shown and how wide it is: control characters as visible
symbols (:func:`shown`, which also escapes), the columns of monospace text
(:func:`columns`), the direction of a piece of text (:func:`strong_direction`)
and the label-and-score tags of entities and arcs."""

import html
import re
import unicodedata
from typing import Optional

__all__ = ["columns", "isolated", "label_tag", "score_text", "shown", "shown_tag", "strong_direction"]


def _shown_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: NUL -> U+2400 ...
    if code == 0x7F:
        return "\u2421"
    if 0x80 <= code < 0xA0 or 0xD800 <= code < 0xE000:  # C1 controls, lone surrogates
        return "\ufffd"
    return ch


_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def shown(text: str) -> str:
    """``text`` with control characters (other than tab and newline) as
    visible symbols (U+2400...) and lone surrogates as U+FFFD, HTML-escaped."""
    return html.escape(_UNSAFE.sub(lambda m: _shown_char(m.group()), text), quote=True)


def columns(text: str) -> int:
    """The columns ``text`` takes in a monospace font: wide East Asian
    characters and emoji two, combining marks and format characters none,
    others one.

    text (str): The text.
    RETURNS (int): Its width in columns.
    """
    n = 0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return n


def strong_direction(text: str) -> Optional[str]:
    """The direction ("ltr" or "rtl") of the first strongly directional
    character, as HTML's ``dir="auto"`` decides; None if there is none."""
    for ch in text:
        bidi = unicodedata.bidirectional(ch)
        if bidi == "L":
            return "ltr"
        if bidi in ("R", "AL"):
            return "rtl"
    return None


def score_text(score: Optional[float]) -> str:
    """A score as shown: two decimals, "" for none."""
    return "" if score is None else f"{score:.2f}"


def label_tag(label: str, score: Optional[float]) -> str:
    """The tag of an entity or arc: its label and score, e.g. "Org 0.91"."""
    return f"{label} {score_text(score)}".strip()


# First-strong isolate and pop directional isolate: what is between them
# cannot reorder what is around it (Unicode's bidi algorithm closes any
# override or embedding a label opens at the PDI).
FSI, PDI = "\u2068", "\u2069"


def isolated(text: str) -> str:
    """``text`` as shown (escaped, see :func:`shown`) in a bidi isolate
    (FSI...PDI), for text set next to other text in one line (a tooltip's
    "entity text: label score"): its direction and any bidi control in it
    stay inside.

    text (str): The text.
    RETURNS (str): The isolated text, escaped.
    """
    return shown(f"{FSI}{text}{PDI}")


def shown_tag(label: str, score: Optional[float]) -> str:
    """:func:`label_tag` as shown (escaped, see :func:`shown`), with the label
    isolated, so that a label in another script or holding bidi controls
    cannot reorder the score next to it ("0.90" stays "0.90").

    label (str): The label. score (Optional[float]): The score.
    RETURNS (str): The tag as escaped text.
    """
    return shown(f"{FSI}{label}{PDI} {score_text(score)}".rstrip())
