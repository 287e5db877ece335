"""Import Label Studio annotations (the ``label-studio`` format of :mod:`spacy_spert.io.importers`).

``label-studio``
    Label Studio's JSON export: a list of tasks with ``data`` (the text under
    ``text_key``, default ``"text"``), ``annotations`` and ``predictions``.
    The first annotation not ``was_cancelled`` is imported; cancelled and
    further ones are counted. A task is skipped, and counted once, if all its
    annotations are cancelled (the annotator skipped it), if it has none, or
    if it has only predictions (pre-annotations, e.g. of ``predict --format
    label-studio`` or of ``serve`` as an ML backend): with
    ``predictions=True`` (``--predictions``) such a task is imported from its
    first prediction instead, and counted. An unsubmitted draft (``drafts``)
    is never imported: a task with one and no annotation is skipped (its
    predictions too) and counted, to be submitted in Label Studio first.
    The ``result`` of an annotation or a prediction is read alike: its items
    of type ``"labels"`` are entities (one per label of the region;
    ``value.text``, if present, must equal the text slice), items of type
    ``"relation"`` relations from ``from_id`` to ``to_id`` with each of their
    ``labels`` (``direction`` ``"left"`` swaps head and tail; ``"bi"``, an
    undirected relation, takes the entity that comes first in the text as
    head, the canonical order of :func:`spacy_spert.relations.canonical_order`).
    A relation without labels is dropped and counted (Label Studio lets
    annotators draw unlabelled arrows); a relation from or to a region of
    several labels uses the region's first label. Other result types are
    counted.

    Label Studio's other exports cannot be imported (JSON-MIN has no
    relations; CSV, TSV and CONLL2003 are not JSON): they are recognised and
    refused with a message that says to choose the JSON export.

The policies shared with the other formats are in :mod:`.common`.
"""

import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..label_studio_tasks import DIRECTIONS
from ..validation import ConversionError, json_type, load_json, show
from .common import Entity, Fail, ImportReport, Item, Relation, get_field, is_label


def read_label_studio(
    path: Path, source: str, report: ImportReport, text_key: str, predictions: bool = False
) -> Iterator[Item]:
    """Read the annotated tasks of a Label Studio JSON export.

    path (Path): The JSON file.
    source (str): The file's name for messages.
    report (ImportReport): Counts the tasks and annotations skipped and left out.
    text_key (str): The key of the text in a task's ``data``.
    predictions (bool): Import a task that has predictions and no annotation
        (none cancelled) from its first prediction.
    YIELDS (Item): One per task with an annotation (or, with ``predictions``,
        a prediction) and a non-empty text.
    RAISES: ConversionError for an invalid task, or a file that is another
        export of Label Studio.
    """
    export = _other_export(path)
    if export is not None:
        raise ConversionError(source, _choose_json(f"not JSON but Label Studio's {export} export"))
    tasks = load_json(path, source)
    if not isinstance(tasks, list):
        raise ConversionError(
            source, f"expected a list of tasks (Label Studio's JSON export, not JSON-MIN), got {json_type(tasks)}"
        )
    first = tasks[0] if tasks else None
    if isinstance(first, dict) and "data" not in first and "annotations" not in first:
        fields = ", ".join(map(show, list(first)[:6])) or "none"
        found = f"tasks without 'data' and 'annotations' (fields: {fields}): Label Studio's JSON-MIN export"
        raise ConversionError(source, _choose_json(found))
    for i, task in enumerate(tasks):
        task_id = task.get("id") if isinstance(task, dict) else None
        record_id = show(task_id) if task_id is not None else None

        def fail(problem: str, name: Optional[str] = None, i=i, record_id=record_id) -> ConversionError:
            return ConversionError(source, problem, record=i, field=name, record_id=record_id)

        if not isinstance(task, dict):
            raise fail(f"must be a task object with 'data' and 'annotations', got {json_type(task)}")
        data = get_field(task, "data", "object", fail)
        if text_key not in data:
            keys = ", ".join(map(show, data)) or "none"
            raise fail(f"missing (the task's data has: {keys}; choose one with --text-key)", f"data.{text_key}")
        text = get_field(data, text_key, "str", fail, "data")
        where = _choose(task, fail, report, predictions)
        if where is None:
            continue
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        item = Item(source, {"record": i, "record_id": record_id}, text, [], [], str(task.get("id", i)))
        kind, k = where
        report.from_predictions += kind == "predictions"
        at = f"{kind}[{k}]"
        _label_studio_result(item, get_field(task[kind][k], "result", "list", fail, at), fail, at, report)
        yield item


def _choose(task: Dict[str, Any], fail: Fail, report: ImportReport, predictions: bool) -> Optional[Tuple[str, int]]:
    """Which result of a task to import, ("annotations" or "predictions", index), or None if none (the task
    is counted once, by why)."""
    annotations = get_field(task, "annotations", "list", fail, default=[])
    found = get_field(task, "predictions", "list", fail, default=[])  # objects, or ids in some exports
    drafts = get_field(task, "drafts", "list", fail, default=[])
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise fail(f"must be an object with 'result', got {json_type(annotation)}", f"annotations[{k}]")
    cancelled = sum(1 for annotation in annotations if annotation.get("was_cancelled"))
    chosen = next((k for k, annotation in enumerate(annotations) if not annotation.get("was_cancelled")), None)
    if chosen is not None:
        _count(report, "cancelled annotations", cancelled)
        _count(report, "further annotations of a task (the first is imported)", len(annotations) - cancelled - 1)
        _count(report, "predictions of annotated tasks (the annotation is imported)", len(found))
        return "annotations", chosen
    if cancelled:
        _count(report, "tasks with only cancelled annotations (skipped by the annotator)")
    elif drafts:
        _count(report, "tasks with only an unsubmitted draft (submit it in Label Studio to import it)")
    elif found and not predictions:
        _count(report, "tasks with only predictions (import them with --predictions)")
    elif found:
        if not isinstance(found[0], dict):
            raise fail(
                f"is {show(found[0])}, a prediction's id, not the prediction: export the project with full "
                "predictions (Label Studio's export with the serialization option predictions.only_id false)",
                "predictions[0]",
            )
        _count(report, "further predictions of a task (the first is imported)", len(found) - 1)
        return "predictions", 0
    else:
        _count(report, "tasks without annotations")
    return None


def _count(report: ImportReport, what: str, n: int = 1) -> None:
    if n:
        report.skipped[what] += n


def _choose_json(found: str) -> str:
    return (
        f'{found}, which cannot be imported: export the project again choosing "JSON" in Label Studio\'s Export dialog'
    )


# A CONLL2003 line as Label Studio writes it: "TOKEN -X- _ TAG" (or its "-DOCSTART- -X- O" header).
_CONLL_LINE = re.compile(r"^(-DOCSTART- -X- \S+|\S+ -X- _ \S+)$")


def _other_export(path: Path) -> Optional[str]:
    """The export of Label Studio that ``path`` looks like when it is not
    JSON ("CSV", "TSV" or "CONLL2003", by its first line), else None."""
    with path.open("rb") as f:
        head = f.read(4096).decode("utf-8-sig", errors="replace").lstrip()
    if not head or head[0] in "[{":
        return None
    first = head.splitlines()[0].strip()
    if _CONLL_LINE.match(first):
        return "CONLL2003"
    if "\t" in first:
        return "TSV"
    if "," in first:
        return "CSV"
    return None


def _label_studio_result(item: Item, result: List[Any], fail: Fail, where: str, report: ImportReport) -> None:
    regions: Dict[str, Optional[int]] = {}  # result id -> first entity of the region; None: not imported
    relations = []
    for k, res in enumerate(result):
        at = f"{where}.result[{k}]"
        if not isinstance(res, dict):
            raise fail(f"must be an object with 'type', got {json_type(res)}", at)
        kind = get_field(res, "type", "str", fail, at)
        res_id = res.get("id")
        if kind == "relation":
            relations.append((at, res))
            continue
        if kind != "labels":
            report.dropped[f"'{kind}' results"] += 1
            if res_id is not None:
                regions.setdefault(str(res_id), None)
            continue
        value = get_field(res, "value", "object", fail, at)
        start, end = (get_field(value, key, "int", fail, f"{at}.value") for key in ("start", "end"))
        labels = get_field(value, "labels", "list", fail, f"{at}.value")
        if not labels or not all(is_label(label) for label in labels):
            raise fail(f"must be a non-empty list of labels, got {show(labels)}", f"{at}.value.labels")
        given = value.get("text")
        if given is not None and 0 <= start < end <= len(item.text) and item.text[start:end] != given:
            hint = ""
            if any(ord(c) > 0xFFFF for c in item.text):
                hint = " (the text has characters outside the Basic Multilingual Plane: offsets in UTF-16 units?)"
            raise fail(
                f"is {show(given)}, the text has {show(item.text[start:end])} at {start}-{end}{hint}",
                f"{at}.value.text",
            )
        if res_id is not None:
            regions[str(res_id)] = len(item.entities)
        item.entities.extend(Entity(start, end, label, f"{at}.value", f"{at}.value.labels") for label in labels)
    for at, res in relations:
        ends = []
        for key in ("from_id", "to_id"):
            region = str(get_field(res, key, "str", fail, at))
            if region not in regions:
                raise fail(f"no region with id {show(region)} in this annotation", f"{at}.{key}")
            ends.append(regions[region])
        direction = get_field(res, "direction", "str", fail, at, default="right")
        if direction not in DIRECTIONS:
            raise fail(f'must be "right", "left" or "bi", got {show(direction)}', f"{at}.direction")
        labels = get_field(res, "labels", "list", fail, at, default=[])
        head, tail = ends
        if head is None or tail is None:
            report.dropped["relations with a left-out argument"] += 1
            continue
        if not labels:
            report.dropped["relations without a label"] += 1
            continue
        if head == tail:
            raise fail("from_id and to_id are the same region; a relation needs two entities", at)
        chars = [item.entities[e][:2] for e in (head, tail)]  # (start, end)
        if direction == "left" or (direction == "bi" and chars[1] < chars[0]):
            head, tail = tail, head
        for label in labels:
            if not is_label(label):
                raise fail(f"a label must be a non-empty string, got {show(label)}", f"{at}.labels")
            item.relations.append(Relation(head, tail, label, f"{at}.labels"))
