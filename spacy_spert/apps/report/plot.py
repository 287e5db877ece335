"""The calibration plot of the report: predicted score bins against observed
precision as an inline SVG (no script, no plotting library)."""

from typing import Any, Dict, List

from ..render.text import shown

WIDTH, HEIGHT = 380, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 48
BAR_COLOR = "#7aa6d8"
POINT_COLOR = "#1f4e8c"


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _tick(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 1000 else f"{x:.3g}"


def calibration_svg(calibration: Dict[str, Any], name: str) -> str:
    """An SVG of one calibration table (``analysis.calibration``): one bar
    per non-empty bin up to its observed precision (a tooltip gives the
    counts), a point at the bin's mean score and, for probabilities, the
    diagonal of perfect calibration.

    calibration (Dict[str, Any]): The table.
    name (str): What it is of ("entities", "relations"), for the label.
    RETURNS (str): The ``<svg>`` element.
    """
    bins = calibration["bins"]
    lo, hi = (bins[0]["lo"], bins[-1]["hi"]) if bins else (0.0, 1.0)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(score: float) -> float:
        return LEFT + (score - lo) / (hi - lo) * pw

    def y(precision: float) -> float:
        return TOP + (1.0 - precision) * ph

    parts: List[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spert-calibration" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{shown(f"calibration of {name}")}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#bbb"/>',
    ]
    for i in range(5):  # horizontal grid lines and the y ticks
        p = i / 4
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{_num(y(p))}" y2="{_num(y(p))}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_num(y(p) + 4)}" text-anchor="end" font-size="11">{p:.2f}</text>')
    for i in range(5):  # the x ticks
        s = lo + (hi - lo) * i / 4
        parts.append(
            f'<text x="{_num(x(s))}" y="{TOP + ph + 16}" text-anchor="middle" font-size="11">{_tick(s)}</text>'
        )
    for b in bins:
        if not b["count"]:
            continue
        left, right = x(b["lo"]), x(b["hi"])
        top = y(b["precision"])
        tip = (
            f"scores {_tick(b['lo'])} to {_tick(b['hi'])}: {b['correct']} of {b['count']} correct "
            f"(precision {b['precision']:.2f}, mean score {b['mean_score']:.2f})"
        )
        parts.append(
            f'<g class="bin"><title>{shown(tip)}</title>'
            f'<rect x="{_num(left + 1)}" y="{_num(top)}" width="{_num(max(right - left - 2, 1))}" '
            f'height="{_num(TOP + ph - top)}" fill="{BAR_COLOR}"/>'
            f'<circle cx="{_num(x(b["mean_score"]))}" cy="{_num(top)}" r="3" fill="{POINT_COLOR}"/></g>'
        )
    if calibration["probabilities"]:
        parts.append(
            f'<line class="diagonal" x1="{_num(x(0.0))}" y1="{_num(y(0.0))}" x2="{_num(x(1.0))}" y2="{_num(y(1.0))}" '
            'stroke="#888" stroke-dasharray="4 3"/>'
        )
    parts.append(
        f'<text x="{LEFT + pw / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">predicted score</text>'
        f'<text transform="translate(14 {TOP + ph / 2:.0f}) rotate(-90)" text-anchor="middle" '
        'font-size="12">observed precision</text></svg>'
    )
    return "".join(parts)
