"""The search of ``tune-thresholds``: per-label thresholds that maximise the
micro F1 of one task (entities, or relations) on labelled data.

The task's predictions are collected once, at thresholds no higher than any
the search tries (the floor), each with its label, its score and whether it is
correct. A threshold ``t`` of a label keeps the label's predictions with a
score >= t, so the micro F1 of any thresholds follows from counts, with no
second run of the model:

    micro F1 = 2 x correct predictions kept / (predictions kept + gold items)

The search (:func:`search_thresholds`):

* Coordinate ascent: one label at a time, the others fixed, in order of
  falling support (gold items), then by name; passes over the labels repeat
  until one changes nothing (at most ``MAX_PASSES``). A threshold changes only
  for a strictly higher micro F1, so the search ends.
* For one label every distinct set of its predictions a threshold can keep is
  tried: for each distinct score u, those with a score >= u, and none. That is
  the exact optimum over all thresholds >= the floor: no grid to miss it.
* Ties between the best sets: the label's current threshold if it keeps one
  of them (nothing changes), else its fallback (the global threshold, a
  threshold of 0 for SpERT's entities) if that does, else the set nearest the
  current one in the order of the scores.
* A set's threshold lies in the gap between its lowest kept score and the
  next lower score: the decimal with the fewest digits nearest the gap's
  middle (0.55 between 0.5 and 0.6), strictly inside the gap, so as far from
  the dev scores on both sides as a readable number goes. Keeping all: a
  number in [floor, lowest score); none: a short number above the highest.
* Labels with fewer than ``min_support`` gold items are not tuned: they keep
  their fallback (few items give a noisy optimum).

Scores and thresholds are compared in float32, as the component compares them
(the scores are float32).
"""

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy

# Passes of the coordinate ascent at most (it usually ends after 2 or 3).
MAX_PASSES = 10
# Decimal digits a threshold may have at most (beyond, the exact score is used).
MAX_DIGITS = 9


@dataclass
class LabelScores:
    """The collected predictions of one label and its gold support.

    scores (numpy.ndarray): (N,) float32, the predictions' scores.
    correct (numpy.ndarray): (N,) bool, whether each prediction is correct.
    support (int): The label's gold items.
    """

    scores: numpy.ndarray
    correct: numpy.ndarray
    support: int

    @classmethod
    def make(cls, scores: Sequence[float], correct: Sequence[bool], support: int) -> "LabelScores":
        """RETURNS (LabelScores): The predictions as arrays (float32 scores)."""
        return cls(numpy.asarray(scores, dtype="float32"), numpy.asarray(correct, dtype=bool), int(support))

    def counts(self, threshold: float) -> Tuple[int, int]:
        """threshold (float): The label's threshold.
        RETURNS (Tuple[int, int]): The predictions kept and the correct ones among them."""
        keep = self.scores >= numpy.float32(threshold)
        return int(keep.sum()), int(self.correct[keep].sum())


def f1_from_counts(n_correct: int, n_predicted: int, n_gold: int) -> float:
    """RETURNS (float): 2 x correct / (predicted + gold); 0.0 with neither."""
    total = n_predicted + n_gold
    return 2.0 * n_correct / total if total else 0.0


def prf(item: LabelScores, threshold: float) -> Dict[str, float]:
    """One label's precision, recall and F1 at a threshold.

    RETURNS (Dict[str, float]): {"p", "r", "f", "predicted", "correct"}; a
        value that is undefined is 0.0.
    """
    n, tp = item.counts(threshold)
    return {
        "p": tp / n if n else 0.0,
        "r": tp / item.support if item.support else 0.0,
        "f": f1_from_counts(tp, n, item.support),
        "predicted": n,
        "correct": tp,
    }


def micro_f1(labels: Mapping[str, LabelScores], thresholds: Mapping[str, float], other_gold: int = 0) -> float:
    """The micro F1 of all labels at the thresholds.

    labels (Mapping[str, LabelScores]): The predictions by label.
    thresholds (Mapping[str, float]): Every label's threshold.
    other_gold (int): Gold items of labels without predictions or thresholds.
    RETURNS (float): The micro F1.
    """
    n = tp = 0
    for label, item in labels.items():
        kept, correct = item.counts(thresholds[label])
        n, tp = n + kept, tp + correct
    return f1_from_counts(tp, n, sum(item.support for item in labels.values()) + other_gold)


def search_thresholds(
    labels: Mapping[str, LabelScores],
    current: Mapping[str, float],
    fallback: Mapping[str, float],
    *,
    floor: float,
    min_support: int,
    other_gold: int = 0,
) -> Dict[str, float]:
    """Per-label thresholds that maximise the micro F1 (see the module's
    docstring for the search).

    labels (Mapping[str, LabelScores]): The predictions of every label,
        collected at thresholds <= floor.
    current (Mapping[str, float]): Every label's threshold now: the start.
    fallback (Mapping[str, float]): Every label's threshold without its own.
    floor (float): The lowest threshold to choose (predictions were collected
        down to it).
    min_support (int): Labels with fewer gold items keep their fallback.
    other_gold (int): Gold items of types the labels do not cover (counted in
        the micro F1 as missed).
    RETURNS (Dict[str, float]): Every label's threshold.
    """
    tuned = sorted(
        (label for label, item in labels.items() if item.support >= min_support),
        key=lambda label: (-labels[label].support, label),
    )
    thresholds = {label: float(current[label] if label in tuned else fallback[label]) for label in labels}
    counts = {label: labels[label].counts(thresholds[label]) for label in labels}
    n_gold = sum(item.support for item in labels.values()) + other_gold
    for _ in range(MAX_PASSES):
        changed = False
        for label in tuned:
            others_n = sum(n for other, (n, _) in counts.items() if other != label)
            others_tp = sum(tp for other, (_, tp) in counts.items() if other != label)
            best = best_threshold(labels[label], thresholds[label], fallback[label], floor, others_n, others_tp, n_gold)
            if best != thresholds[label]:
                thresholds[label] = best
                counts[label] = labels[label].counts(best)
                changed = True
        if not changed:
            break
    return thresholds


def best_threshold(
    item: LabelScores,
    current: float,
    fallback: float,
    floor: float,
    others_predicted: int,
    others_correct: int,
    n_gold: int,
) -> float:
    """The threshold of one label that maximises the micro F1, the others
    fixed (see the module's docstring for the ties and the number chosen).

    item (LabelScores): The label's predictions.
    current (float): Its threshold now. fallback (float): Its fallback.
    floor (float): The lowest threshold to choose.
    others_predicted, others_correct (int): The other labels' kept and
        correct predictions.
    n_gold (int): All gold items of the task.
    RETURNS (float): The threshold (``current`` unless another is strictly better).
    """
    order = numpy.argsort(item.scores, kind="stable")[::-1]  # falling scores
    scores, correct = item.scores[order], item.correct[order]
    # keep-set k (k = 0..m) keeps the scores >= distinct[k - 1]; 0 keeps none
    ends = numpy.flatnonzero(numpy.append(scores[1:] != scores[:-1], True)) + 1
    distinct = scores[ends - 1] if len(scores) else scores
    kept = numpy.concatenate(([0], ends))
    hits = numpy.concatenate(([0], numpy.cumsum(correct)[ends - 1] if len(scores) else []))
    denominator = others_predicted + kept + n_gold
    f1 = numpy.where(denominator > 0, 2.0 * (others_correct + hits) / numpy.maximum(denominator, 1), 0.0)
    best = numpy.flatnonzero(f1 == f1.max())

    def keep_set(threshold: float) -> int:
        return int((distinct >= numpy.float32(threshold)).sum())

    k_current = keep_set(current)
    if k_current in best:
        return current
    if keep_set(fallback) in best and fallback >= floor:
        return fallback
    k = int(best[numpy.argmin(numpy.abs(best - k_current))])
    if k == 0:
        return number_above(float(distinct[0]))
    low = float(distinct[k]) if k < len(distinct) else None
    return number_between(low, float(distinct[k - 1]), floor)


def number_between(low: Optional[float], high: float, floor: float) -> float:
    """The threshold of a gap between scores: the decimal with the fewest
    digits nearest the gap's middle that lies strictly between ``low`` (to
    drop) and ``high`` (to keep), in float32; ``high`` itself where no
    decimal of up to ``MAX_DIGITS`` digits does.

    low (Optional[float]): The highest score to drop; None: none is dropped,
        the threshold lies in [floor, high).
    high (float): The lowest score to keep.
    floor (float): The lowest threshold (where ``low`` is None).
    RETURNS (float): The threshold.
    """
    bottom = floor if low is None else low
    middle = (bottom + high) / 2
    for digits in range(MAX_DIGITS + 1):
        value = round(middle, digits)
        as_float32 = numpy.float32(value)
        above = as_float32 >= numpy.float32(floor) if low is None else as_float32 > numpy.float32(low)
        if above and as_float32 < numpy.float32(high):
            return float(value)
    return high


def number_above(score: float) -> float:
    """The threshold that drops every score up to ``score``: a short decimal
    above it (in float32).

    RETURNS (float): The threshold.
    """
    for digits in range(1, MAX_DIGITS + 1):
        step = 10.0**-digits
        value = round(math.floor(score / step) * step + step, digits)
        if numpy.float32(value) > numpy.float32(score):
            return float(value)
    return float(numpy.nextafter(numpy.float32(score), numpy.float32(numpy.inf)))
