"""Import Label Studio annotations (the ``label-studio`` format of :mod:`spacy_spert.io.importers`).

``label-studio``
    Label Studio's JSON export: a list of tasks with ``data`` (the text under
    ``text_key``, default ``"text"``) and ``annotations``. The first
    annotation not ``was_cancelled`` is imported; cancelled and further ones
    are counted, tasks with none are skipped and counted. Its ``result``
    items of type ``"labels"`` are entities (one per label of the region;
    ``value.text``, if present, must equal the text slice), items of type
    ``"relation"`` relations from ``from_id`` to ``to_id`` with each of their
    ``labels`` (``direction`` ``"left"`` swaps head and tail; ``"bi"``, an
    undirected relation, takes the entity that comes first in the text as
    head, the canonical order of :func:`spacy_spert.relations.canonical_order`).
    A relation without labels is dropped and counted (Label Studio lets
    annotators draw unlabelled arrows); a relation from or to a region of
    several labels uses the region's first label. Other result types are
    counted.

The policies shared with the other formats are in :mod:`.common`.
"""

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ..validation import ConversionError, json_type, load_json, show
from .common import Entity, Fail, ImportReport, Item, Relation, get_field, is_label


def read_label_studio(path: Path, source: str, report: ImportReport, text_key: str) -> Iterator[Item]:
    """Read the annotated tasks of a Label Studio JSON export.

    path (Path): The JSON file.
    source (str): The file's name for messages.
    report (ImportReport): Counts the tasks and annotations skipped and left out.
    text_key (str): The key of the text in a task's ``data``.
    YIELDS (Item): One per task with an annotation and a non-empty text.
    RAISES: ConversionError for an invalid task.
    """
    tasks = load_json(path, source)
    if not isinstance(tasks, list):
        raise ConversionError(
            source, f"expected a list of tasks (Label Studio's JSON export, not JSON-MIN), got {json_type(tasks)}"
        )
    for i, task in enumerate(tasks):

        def fail(problem: str, name: Optional[str] = None, i=i) -> ConversionError:
            return ConversionError(source, problem, record=i, field=name)

        if not isinstance(task, dict):
            raise fail(f"must be a task object with 'data' and 'annotations', got {json_type(task)}")
        data = get_field(task, "data", "object", fail)
        if text_key not in data:
            keys = ", ".join(map(show, data)) or "none"
            raise fail(f"missing (the task's data has: {keys}; choose one with --text-key)", f"data.{text_key}")
        text = get_field(data, text_key, "str", fail, "data")
        annotations = get_field(task, "annotations", "list", fail, default=[])
        chosen = None
        for k, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise fail(f"must be an object with 'result', got {json_type(annotation)}", f"annotations[{k}]")
            if annotation.get("was_cancelled"):
                report.skipped["cancelled annotations"] += 1
            elif chosen is None:
                chosen = k
            else:
                report.skipped["further annotations of a task (the first is imported)"] += 1
        if chosen is None:
            report.skipped["tasks without annotations"] += 1
            continue
        if not text.strip():
            report.skipped["empty texts"] += 1
            continue
        item = Item(source, {"record": i}, text, [], [], str(task.get("id", i)))
        where = f"annotations[{chosen}]"
        _label_studio_result(item, get_field(annotations[chosen], "result", "list", fail, where), fail, where, report)
        yield item


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
        if direction not in ("right", "left", "bi"):
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
