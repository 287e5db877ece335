"""The numbers of the error-analysis report, from evaluated examples:
:func:`analyse` returns one JSON-safe dict (the content of ``report.json``
and of the HTML page). See the package docstring for what each part means."""

import math
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.training import Example

from ...io.records import doc_to_record
from ...pipeline.scorer import Key, boundaries_key, group_by_type, prf_from_counts
from .matching import (
    ENTITY_BUCKETS,
    RELATION_BUCKETS,
    DocItems,
    Entity,
    ErrorItem,
    Item,
    entity_errors,
    read_example,
    relation_errors,
)

REPORT_VERSION = 1
# Tokens of context on either side of an example's items.
CONTEXT_TOKENS = 12
# How many doc indices an example lists where its pattern occurs.
MAX_DOCS_LISTED = 10

Keyed = List[Tuple[int, Key]]


def _label(key: Key) -> str:
    return str(key[-1])


def prf_table(gold: Keyed, pred: Keyed) -> Dict[str, Any]:
    """Per-label and averaged counts and P/R/F1, with the scorer's semantics
    (``pipeline/scorer.prf_from_sets``): items are sets of (doc, key); the
    labels are those with a gold or predicted item; macro is the mean of the
    per-label values.

    gold, pred (List[Tuple[int, tuple]]): The (doc index, key) items; a key's
        last element is its label.
    RETURNS (Dict[str, Any]): ``{"per_label": {label: {"support",
        "predicted", "tp", "fp", "fn", "p", "r", "f"}}, "micro": {the same
        over all labels}, "macro": {"p", "r", "f"}}``.
    """
    gold_by, pred_by = group_by_type(gold, _label), group_by_type(pred, _label)
    labels = sorted(t for t in set(gold_by) | set(pred_by) if gold_by.get(t) or pred_by.get(t))
    per_label: Dict[str, Dict[str, Any]] = {}
    for label in labels:
        g, p = gold_by.get(label, set()), pred_by.get(label, set())
        per_label[label] = _counts(len(p & g), len(p - g), len(g - p))
    total = _counts(*(sum(row[c] for row in per_label.values()) for c in ("tp", "fp", "fn")))
    macro = {m: sum(row[m] for row in per_label.values()) / len(labels) if labels else 0.0 for m in ("p", "r", "f")}
    return {"per_label": per_label, "micro": total, "macro": macro}


def _counts(tp: int, fp: int, fn: int) -> Dict[str, Any]:
    p, r, f = prf_from_counts(tp, fp, fn)
    return {"support": tp + fn, "predicted": tp + fp, "tp": tp, "fp": fp, "fn": fn, "p": p, "r": r, "f": f}


def confusion(docs: Sequence[DocItems]) -> Dict[str, Any]:
    """The entity confusion matrix: gold type x predicted type over spans with
    the same boundaries. At each boundaries, types on both sides are counted
    on the diagonal, the remaining gold and predicted types are paired in
    label order, and what is left is "missed" (no predicted entity with these
    boundaries: the last column) or "spurious" (no gold entity with these
    boundaries: the last row). Row sums are the gold counts, column sums the
    predicted counts.

    docs (Sequence[DocItems]): The items of each doc.
    RETURNS (Dict[str, Any]): ``{"labels": [...], "counts": rows}``: row i is
        gold ``labels[i]`` (the last row: spurious), column j predicted
        ``labels[j]`` (the last column: missed).
    """
    cells: Counter = Counter()
    labels: Set[str] = set()
    for items in docs:
        by_bounds: Dict[Any, Tuple[List[str], List[str]]] = {}
        for key in items.gold_entities:
            by_bounds.setdefault(key[:2], ([], []))[0].append(key[2] or "")
        for key in items.pred_entities:
            by_bounds.setdefault(key[:2], ([], []))[1].append(key[2] or "")
        for gold, pred in by_bounds.values():
            labels.update(gold, pred)
            both = set(gold) & set(pred)
            cells.update((t, t) for t in both)
            rest_gold = sorted(t for t in gold if t not in both)
            rest_pred = sorted(t for t in pred if t not in both)
            cells.update(zip(rest_gold, rest_pred))
            n = min(len(rest_gold), len(rest_pred))
            cells.update((t, None) for t in rest_gold[n:])
            cells.update((None, t) for t in rest_pred[n:])
    order: List[Optional[str]] = [*sorted(labels), None]
    return {"labels": order[:-1], "counts": [[cells[(g, p)] for p in order] for g in order]}


def calibration(pairs: Sequence[Tuple[float, bool]], n_bins: int = 10) -> Dict[str, Any]:
    """Predicted score bins against observed precision.

    Scores in [0, 1] (SpERT's probabilities) fall into ``n_bins`` equal bins
    of [0, 1]; other scores (SpERT.MT's raw class scores) into equal bins
    from the lowest to the highest score, and no calibration error is given.
    A bin holds the scores from its ``lo`` up to but not including its
    ``hi`` (the last one includes its ``hi``).

    pairs (Sequence[Tuple[float, bool]]): (score, correct) per prediction.
    n_bins (int): The number of bins.
    RETURNS (Dict[str, Any]): ``{"probabilities": bool, "count", "correct",
        "ece" (expected calibration error: the bins' |precision - mean score|
        weighted by their counts; None for raw scores or no predictions),
        "bins": [{"lo", "hi", "count", "correct", "precision", "mean_score"}]}``;
        a bin's precision and mean score are None when it is empty.
    """
    scores = [s for s, _ in pairs if math.isfinite(s)]
    probabilities = all(0.0 <= s <= 1.0 for s in scores)
    lo, hi = (0.0, 1.0) if probabilities or not scores else (min(scores), max(scores))
    if hi <= lo:
        hi = lo + 1.0
    counts, right, sums = [0] * n_bins, [0] * n_bins, [0.0] * n_bins
    for score, correct in pairs:
        if not math.isfinite(score):
            continue
        i = min(max(math.floor((score - lo) * n_bins / (hi - lo)), 0), n_bins - 1)
        counts[i] += 1
        right[i] += int(bool(correct))
        sums[i] += score
    bins = [
        {
            "lo": lo + (hi - lo) * i / n_bins,
            "hi": lo + (hi - lo) * (i + 1) / n_bins,
            "count": counts[i],
            "correct": right[i],
            "precision": right[i] / counts[i] if counts[i] else None,
            "mean_score": sums[i] / counts[i] if counts[i] else None,
        }
        for i in range(n_bins)
    ]
    n, correct_total = sum(counts), sum(right)
    ece = None
    if probabilities and n:
        ece = sum(abs(right[i] - sums[i]) / n for i in range(n_bins))  # sum of count/n * |precision - mean|
    return {"probabilities": probabilities, "count": n, "correct": correct_total, "ece": ece, "bins": bins}


def _describe(item: Optional[Item]) -> Optional[Tuple[str, ...]]:
    if item is None:
        return None
    if isinstance(item, Entity):
        return (item.text, item.label)
    return (item.head.text, item.head.label, item.label, item.tail.text, item.tail.label)


def _span(item: Item) -> Tuple[int, int]:
    if isinstance(item, Entity):
        return item.start, item.end
    return min(item.head.start, item.tail.start), max(item.head.end, item.tail.end)


def cut_record(record: Dict[str, Any], start: int, end: int, scored: bool = True) -> Dict[str, Any]:
    """The part of a record (``doc_to_record``) between two character offsets:
    its text, the entities inside it and the relations between them.

    record (Dict[str, Any]): The record. start, end (int): Character offsets.
    scored (bool): Keep the scores (False for gold data, whose relations
        carry a score of 1.0).
    RETURNS (Dict[str, Any]): A record of the text ``record["text"][start:end]``,
        with ``"offset"``: ``start``.
    """
    kept: Dict[int, int] = {}
    entities: List[Dict[str, Any]] = []
    for i, ent in enumerate(record["entities"]):
        if start <= ent["start"] and ent["end"] <= end:
            kept[i] = len(entities)
            entities.append(
                {
                    "start": ent["start"] - start,
                    "end": ent["end"] - start,
                    "label": ent["label"],
                    "score": ent["score"] if scored else None,
                }
            )
    relations = [
        {"head": kept[r["head"]], "tail": kept[r["tail"]], "label": r["label"], "score": r["score"] if scored else None}
        for r in record["relations"]
        if r["head"] in kept and r["tail"] in kept
    ]
    return {"text": record["text"][start:end], "entities": entities, "relations": relations, "offset": start}


class _Contexts:
    """The records of the examples' docs, made once per doc."""

    def __init__(self, examples: Sequence[Example], spans_key: str, context_tokens: int) -> None:
        self.examples, self.spans_key, self.context_tokens = examples, spans_key, context_tokens
        self.records: Dict[int, Tuple[Dict[str, Any], Dict[str, Any]]] = {}

    def window(self, error: ErrorItem) -> Dict[str, Any]:
        eg = self.examples[error.doc]
        if error.doc not in self.records:
            self.records[error.doc] = (
                doc_to_record(eg.reference, self.spans_key),
                doc_to_record(eg.predicted, self.spans_key),
            )
        gold, pred = self.records[error.doc]
        spans = [_span(item) for item in (error.gold, error.predicted) if item is not None]
        doc = eg.reference
        first = doc.char_span(min(s for s, _ in spans), max(e for _, e in spans), alignment_mode="expand")
        if first is None:  # only whitespace: no tokens to expand to
            start, end = 0, len(doc.text)
        else:
            start = doc[max(first.start - self.context_tokens, 0)].idx if len(doc) else 0
            last = doc[min(first.end + self.context_tokens, len(doc)) - 1]
            end = last.idx + len(last.text)
        return {"gold": cut_record(gold, start, end, scored=False), "predicted": cut_record(pred, start, end)}


def bucket_examples(errors: List[ErrorItem], contexts: _Contexts, max_examples: int) -> List[Dict[str, Any]]:
    """The examples of one bucket: its errors grouped by what they are (the
    texts and labels of the gold and predicted items), the most frequent
    first (ties: the highest score, then document order), one example each
    (the occurrence with the highest score, else the first).

    errors (List[ErrorItem]): The bucket's errors, in document order.
    contexts: Makes the gold and predicted records around an error.
    max_examples (int): The most examples to give.
    RETURNS (List[Dict[str, Any]]): ``{"count", "docs", "doc", "score",
        "gold", "predicted", "context": {"gold", "predicted"}}`` per example.
    """
    groups: Dict[Any, List[ErrorItem]] = {}
    for error in errors:
        groups.setdefault((_describe(error.gold), _describe(error.predicted)), []).append(error)

    def best(group: List[ErrorItem]) -> ErrorItem:
        scored = [e for e in group if e.score is not None]
        return max(scored, key=lambda e: e.score) if scored else group[0]  # type: ignore[arg-type,return-value]

    chosen = [(len(g), best(g), g) for g in groups.values()]
    chosen.sort(key=lambda c: (-c[0], -(c[1].score if c[1].score is not None else -math.inf), c[2][0].doc))
    out = []
    for count, error, group in chosen[:max_examples]:
        out.append(
            {
                "count": count,
                "docs": sorted({e.doc for e in group})[:MAX_DOCS_LISTED],
                "doc": error.doc,
                "score": error.score,
                "gold": error.gold.to_dict() if error.gold is not None else None,
                "predicted": error.predicted.to_dict() if error.predicted is not None else None,
                "context": contexts.window(error),
            }
        )
    return out


def analyse(
    examples: Iterable[Example],
    *,
    spans_key: str = "sc",
    symmetric_relations: Sequence[str] = (),
    max_examples: int = 20,
    n_bins: int = 10,
    context_tokens: int = CONTEXT_TOKENS,
) -> Dict[str, Any]:
    """The error analysis of evaluated examples (``eg.predicted`` processed by
    the pipeline, ``eg.reference`` the gold doc).

    examples (Iterable[Example]): The examples.
    spans_key (str): The span group of the entities (the ``spert`` component's).
    symmetric_relations (Sequence[str]): The component's symmetric relation types.
    max_examples (int): The most examples per bucket.
    n_bins (int): The calibration bins.
    context_tokens (int): Gold tokens shown on either side of an example.
    RETURNS (Dict[str, Any]): JSON-safe: ``version``, ``docs``,
        ``spans_key``, ``symmetric_relations``, ``scores`` (``entities``,
        ``relations_strict``, ``relations_boundaries``: see
        :func:`prf_table`), ``confusion`` (:func:`confusion`), ``buckets``
        (``entities`` and ``relations``: bucket name -> ``{"description",
        "count", "examples"}``, in the order of precedence), ``totals`` (the
        false positives and false negatives the buckets add up to) and
        ``calibration`` (``entities``, ``relations``: :func:`calibration`).
    """
    examples = list(examples)
    symmetric = tuple(symmetric_relations)
    docs = [read_example(eg, spans_key, symmetric) for eg in examples]
    keyed: Dict[str, Keyed] = {name: [] for name in ("gold_ents", "pred_ents", "gold_rels", "pred_rels")}
    errors: Dict[str, List[ErrorItem]] = {"entities": [], "relations": []}
    ent_pairs: List[Tuple[float, bool]] = []
    rel_pairs: List[Tuple[float, bool]] = []
    for i, items in enumerate(docs):
        keyed["gold_ents"].extend((i, k) for k in items.gold_entities)
        keyed["pred_ents"].extend((i, k) for k in items.pred_entities)
        keyed["gold_rels"].extend((i, k) for k in items.gold_relations)
        keyed["pred_rels"].extend((i, k) for k in items.pred_relations)
        errors["entities"].extend(entity_errors(i, items))
        errors["relations"].extend(relation_errors(i, items))
        ent_pairs.extend(
            (e.score, k in items.gold_entities) for k, e in items.pred_entities.items() if e.score is not None
        )
        rel_pairs.extend(
            (r.score, k in items.gold_relations) for k, r in items.pred_relations.items() if r.score is not None
        )
    scores = {
        "entities": prf_table(keyed["gold_ents"], keyed["pred_ents"]),
        "relations_strict": prf_table(keyed["gold_rels"], keyed["pred_rels"]),
        "relations_boundaries": prf_table(
            list({(i, boundaries_key(k)) for i, k in keyed["gold_rels"]}),
            list({(i, boundaries_key(k)) for i, k in keyed["pred_rels"]}),
        ),
    }
    contexts = _Contexts(examples, spans_key, context_tokens)
    buckets: Dict[str, Dict[str, Any]] = {}
    for kind, table in (("entities", ENTITY_BUCKETS), ("relations", RELATION_BUCKETS)):
        buckets[kind] = {}
        for name, description in table:
            mine = [e for e in errors[kind] if e.bucket == name]
            buckets[kind][name] = {
                "description": description,
                "count": len(mine),
                "examples": bucket_examples(mine, contexts, max_examples),
            }
    totals = {
        kind: {"false_positives": scores[score]["micro"]["fp"], "false_negatives": scores[score]["micro"]["fn"]}
        for kind, score in (("entities", "entities"), ("relations", "relations_strict"))
    }
    return {
        "version": REPORT_VERSION,
        "docs": len(examples),
        "spans_key": spans_key,
        "symmetric_relations": list(symmetric),
        "scores": scores,
        "confusion": confusion(docs),
        "buckets": buckets,
        "totals": totals,
        "calibration": {"entities": calibration(ent_pairs, n_bins), "relations": calibration(rel_pairs, n_bins)},
    }
