"""Label Studio's task format, in one place: a record of ``predict`` (:func:`~spacy_spert.io.records.doc_to_record`)
as a Label Studio prediction (:func:`record_to_prediction`) and task (:func:`record_to_task`), and a project's
labeling config (:func:`parse_label_config`), whose names and labels the predictions use.

Used by ``serve`` (the ML backend routes ``/setup`` and ``/predict``), by ``predict --format label-studio`` (a
file of tasks with pre-annotations) and by the importer (``import label-studio``, which reads them back), so the
round trip is exact by construction.

A prediction (Label Studio 1.23)::

    {"model_version": "en_pipeline-0.0.0", "score": 0.71, "result": [
      {"id": "e0", "from_name": "label", "to_name": "text", "type": "labels", "score": 0.97,
       "value": {"start": 0, "end": 8, "text": "Anna Lee", "labels": ["Peop"]}},
      {"id": "e1", ...},
      {"type": "relation", "from_id": "e0", "to_id": "e1", "direction": "right", "labels": ["Work_For"],
       "score": 0.88}]}

- Regions: one per entity, ``id`` ``"e<i>"`` with ``i`` the entity's index in the record (unique in a task,
  and the same for the same prediction); ``start``/``end`` are offsets in code points of the text (Python
  ``str`` indices, as Label Studio counts them), ``text`` the entity's text, ``score`` its score.
- Relations: ``from_id`` the head's region, ``to_id`` the tail's, ``direction`` ``"right"`` (head to tail),
  one label. Their ``score`` is kept on the relation item: Label Studio stores result items as they come and
  exports them so, though its editor shows no score for a relation.
- The task's ``score`` (:func:`task_score`) is the lowest score of its entities and relations: sort the Data
  Manager by prediction score, ascending, to see the least certain tasks first. A task where the model found
  nothing scores 1.0 (nothing to doubt in what it found). Scores are SpERT's probabilities (SpERT.MT: raw
  class scores, comparable within one model only).

Labels: the config's ``<Labels>`` (on a ``<Text>``) and ``<Relations>`` give the names Label Studio shows.
A model label is written as the config's label of the same name, else the config's label that is the same but
for case and punctuation (``Work_For`` -> ``Work for``); a model label with neither is left out, with its
relations, and :meth:`LabelConfig.check_labels` reports it, as it reports config labels the model never
predicts. Without a config (:data:`DEFAULT_CONFIG`, Label Studio's own defaults ``<Labels name="label"
toName="text">`` and ``<Text name="text" value="$text">``), the model's labels are written as they are.
"""

import re
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from spacy.language import Language

__all__ = [
    "DEFAULT_CONFIG",
    "DIRECTIONS",
    "LabelConfig",
    "LabelConfigError",
    "model_labels",
    "model_version",
    "parse_label_config",
    "read_label_config",
    "record_to_prediction",
    "record_to_task",
    "region_id",
    "task_score",
]

# The directions of a relation item: "right" from from_id to to_id, "left" the other way, "bi" undirected.
DIRECTIONS = ("right", "left", "bi")


class LabelConfigError(ValueError):
    """A labeling config that cannot be read: not XML, a DTD or entity, no ``<Labels>`` on a ``<Text>``."""


def _normal(label: str) -> str:
    # The same label but for case and punctuation: "Work_For", "work for" and "WORK-FOR" are one.
    return re.sub(r"[\W_]+", "", label.casefold())


@dataclass(frozen=True)
class LabelConfig:
    """What predictions need of a project's labeling config.

    from_name (str): The ``name`` of the ``<Labels>`` tag (a region's ``from_name``).
    to_name (str): The ``name`` of its ``<Text>`` tag (a region's ``to_name``).
    text_key (str): The key of the text in a task's ``data`` (the ``<Text>``'s ``value="$KEY"``).
    entity_labels (Optional[Tuple[str, ...]]): The ``<Label>`` values; None: any (no config given).
    relation_labels (Optional[Tuple[str, ...]]): The ``<Relation>`` values; None: any; empty: the config
        has no ``<Relation>`` labels.
    notes (Tuple[str, ...]): What of the config was passed over (further ``<Labels>`` tags).
    """

    from_name: str = "label"
    to_name: str = "text"
    text_key: str = "text"
    entity_labels: Optional[Tuple[str, ...]] = None
    relation_labels: Optional[Tuple[str, ...]] = None
    notes: Tuple[str, ...] = ()
    _index: Dict[str, Dict[str, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for kind, labels in (("entity", self.entity_labels), ("relation", self.relation_labels)):
            normal: Dict[str, List[str]] = {}
            for label in labels or ():
                normal.setdefault(_normal(label), []).append(label)
            # a normal form shared by two config labels maps to neither (only exact names then)
            self._index[kind] = {key: found[0] for key, found in normal.items() if len(found) == 1}

    def _map(self, kind: str, labels: Optional[Tuple[str, ...]], label: str) -> Optional[str]:
        if labels is None or label in labels:
            return label
        return self._index[kind].get(_normal(label))

    def entity_label(self, label: str) -> Optional[str]:
        """The config's label for a model's entity label (None: it has none)."""
        return self._map("entity", self.entity_labels, label)

    def relation_label(self, label: str) -> Optional[str]:
        """The config's label for a model's relation label (None: it has none)."""
        return self._map("relation", self.relation_labels, label)

    def check_labels(self, entity_labels: Sequence[str], relation_labels: Sequence[str]) -> Dict[str, Any]:
        """How the model's labels map onto this config's.

        entity_labels, relation_labels (Sequence[str]): The model's labels (:func:`model_labels`).
        RETURNS (Dict[str, Any]): ``{"entities": {"mapped": {model: config}, "model_only": [...],
            "config_only": [...]}, "relations": {...}, "warnings": [one line each]}``: ``model_only`` labels
            are left out of predictions, ``config_only`` ones are never predicted; the warnings say so, and
            name the labels mapped by another spelling.
        """
        answer: Dict[str, Any] = {}
        warnings: List[str] = [*self.notes]
        tag = f'<Labels name="{self.from_name}">'
        for kind, key, model, config, where in (
            ("entity", "entities", entity_labels, self.entity_labels, tag),
            ("relation", "relations", relation_labels, self.relation_labels, "<Relations>"),
        ):
            mapped = {label: self._map(kind, config, label) for label in model}
            model_only = [label for label, to in mapped.items() if to is None]
            used = set(mapped.values())
            config_only = [label for label in config or () if label not in used]
            answer[key] = {
                "mapped": {label: to for label, to in mapped.items() if to is not None},
                "model_only": model_only,
                "config_only": config_only,
            }
            renamed = [f"{label} -> {to}" for label, to in mapped.items() if to is not None and to != label]
            if renamed:
                warnings.append(f"{kind} labels mapped by another spelling: {', '.join(renamed)}")
            if model_only and kind == "relation" and config == ():
                warnings.append(
                    f"the labeling config has no <Relation> labels: the model's relations ({', '.join(model_only)}) "
                    "are left out of predictions"
                )
            elif model_only:
                warnings.append(
                    f"model {kind} labels not in the labeling config's {where}, left out of predictions: "
                    f"{', '.join(model_only)}"
                )
            if config_only:
                warnings.append(f"labeling config {kind} labels the model never predicts: {', '.join(config_only)}")
        answer["warnings"] = warnings
        return answer


DEFAULT_CONFIG = LabelConfig()


# ---------------------------------------------------------------------------
# The labeling config


class _Forbidden(Exception):
    pass


def _forbid(what: str) -> Any:
    def handler(*_args: Any) -> None:
        raise _Forbidden(what)

    return handler


def _elements(xml_text: str) -> List[Tuple[str, Dict[str, str], Optional[int]]]:
    """The elements of an XML document in document order: (tag, attributes, the index of the nearest
    ``<Labels>`` that holds it or None), tag and attribute names in lower case. A DTD, entity declaration or
    external entity is refused (a labeling config has none), so no entity is ever expanded."""
    parser = xml.parsers.expat.ParserCreate(encoding="utf-8")  # the text's own: an encoding declaration is moot
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _forbid("a DTD (<!DOCTYPE ...>)")
    parser.EntityDeclHandler = _forbid("an entity declaration (<!ENTITY ...>)")
    parser.ExternalEntityRefHandler = _forbid("an external entity")
    elements: List[Tuple[str, Dict[str, str], Optional[int]]] = []
    owners: List[Optional[int]] = []  # per open element: the nearest <Labels> at or above it

    def start(tag: str, attrs: Dict[str, str]) -> None:
        owner = owners[-1] if owners else None
        elements.append((tag.lower(), {k.lower(): v for k, v in attrs.items()}, owner))
        owners.append(len(elements) - 1 if tag.lower() == "labels" else owner)

    def end(_tag: str) -> None:
        owners.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(xml_text.encode("utf-8", "surrogatepass"), True)
    except _Forbidden as e:
        raise LabelConfigError(f"the labeling config has {e}, which a labeling config does not need") from None
    except xml.parsers.expat.ExpatError as e:
        raise LabelConfigError(f"the labeling config is not XML ({e})") from None
    return elements


def parse_label_config(xml_text: str) -> LabelConfig:
    """Read a Label Studio labeling config (the project's XML).

    The first ``<Labels>`` whose ``toName`` names a ``<Text>`` gives ``from_name``, ``to_name``, the text's
    data key (``value="$KEY"``) and the entity labels (its ``<Label value>`` children); the ``<Relation
    value>`` children of ``<Relations>`` give the relation labels (none if there is no ``<Relations>``).
    Further ``<Labels>`` tags are passed over, noted in ``notes``. Tag and attribute names are read in any
    case, as Label Studio reads them.

    xml_text (str): The labeling config.
    RETURNS (LabelConfig): Its names and labels.
    RAISES: LabelConfigError for a config that is not XML, has a DTD or entity, or no ``<Labels>`` on a
        ``<Text>`` with a ``value`` of ``$KEY``.
    """
    if not isinstance(xml_text, str) or not xml_text.strip():
        raise LabelConfigError("the labeling config is empty")
    elements = _elements(xml_text)
    texts = {attrs.get("name"): attrs for tag, attrs, _ in elements if tag == "text" and attrs.get("name")}
    found: List[Tuple[int, str, str]] = []  # (index of the <Labels>, its name, its <Text>'s name)
    for k, (tag, attrs, _) in enumerate(elements):
        if tag != "labels":
            continue
        targets = [name.strip() for name in attrs.get("toname", "").split(",")]
        target = next((name for name in targets if name in texts), None)
        if target is not None and attrs.get("name"):
            found.append((k, attrs["name"], target))
    if not found:
        kinds = sorted({tag for tag, _, _ in elements if tag not in ("view", "header", "style")})
        raise LabelConfigError(
            'the labeling config has no <Labels name=... toName=...> on a <Text name=... value="$..."> '
            f"(it has: {', '.join('<' + tag + '>' for tag in kinds) or 'no tags'}): this model labels spans "
            "of text, as Label Studio's relation extraction template does"
        )
    k, from_name, to_name = found[0]
    value = texts[to_name].get("value", "")
    if not value.startswith("$") or len(value) < 2:
        raise LabelConfigError(
            f'the labeling config\'s <Text name="{to_name}"> has value "{value}": expected "$KEY", the key of '
            "the text in a task's data"
        )
    if texts[to_name].get("valuetype", "text").lower() == "url":
        raise LabelConfigError(
            f'the labeling config\'s <Text name="{to_name}"> loads its text from a URL (valueType="url"): this '
            "model reads the text from the task's data; import the texts themselves"
        )
    entity_labels = [
        attrs["value"] for tag, attrs, owner in elements if tag == "label" and "value" in attrs and owner == k
    ]
    has_relations = any(tag == "relations" for tag, _, _ in elements)
    relation_labels = [attrs["value"] for tag, attrs, _ in elements if tag == "relation" and "value" in attrs]
    notes = tuple(
        f'the labeling config\'s <Labels name="{name}"> is passed over: this model fills '
        f'<Labels name="{from_name}"> only'
        for _, name, _ in found[1:]
    )
    return LabelConfig(
        from_name=from_name,
        to_name=to_name,
        text_key=value[1:],
        entity_labels=tuple(dict.fromkeys(entity_labels)),
        relation_labels=tuple(dict.fromkeys(relation_labels)) if has_relations else (),
        notes=notes,
    )


def read_label_config(path: Union[str, Path]) -> LabelConfig:
    """:func:`parse_label_config` of a file (the XML as Label Studio's labeling interface shows it).

    path (str / Path): The file.
    RETURNS (LabelConfig): Its names and labels.
    RAISES: LabelConfigError naming the file; OSError if it cannot be read.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelConfigError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return parse_label_config(text)
    except LabelConfigError as e:
        raise LabelConfigError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------
# The model


def model_labels(nlp: Language) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The entity and relation labels of a pipeline's ``spert`` components (empty without one).

    nlp (Language): The pipeline.
    RETURNS (Tuple[Tuple[str, ...], Tuple[str, ...]]): The entity labels and the relation labels.
    """
    entities: Dict[str, None] = {}
    relations: Dict[str, None] = {}
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == "spert":
            pipe = nlp.get_pipe(name)
            entities.update(dict.fromkeys(getattr(pipe, "entity_labels", ())))
            relations.update(dict.fromkeys(getattr(pipe, "relation_labels", ())))
    return tuple(entities), tuple(relations)


def model_version(nlp: Language) -> str:
    """A pipeline's name and version as a prediction's ``model_version``: ``LANG_NAME-VERSION`` of its meta
    (Label Studio asks for new predictions when it changes)."""
    meta = nlp.meta
    return f"{meta.get('lang', '')}_{meta.get('name', 'pipeline')}-{meta.get('version', '')}"


# ---------------------------------------------------------------------------
# Predictions and tasks


def region_id(index: int) -> str:
    """The region id of the entity ``entities[index]`` of a record."""
    return f"e{index}"


def task_score(scores: Iterable[Optional[float]]) -> float:
    """A task's score: the lowest of its entities' and relations' scores, 1.0 if there is none (see the
    module docstring)."""
    known = [float(score) for score in scores if score is not None]
    return min(known, default=1.0)


def record_to_prediction(
    record: Dict[str, Any], config: LabelConfig = DEFAULT_CONFIG, version: str = ""
) -> Dict[str, Any]:
    """A record as a Label Studio prediction (see the module docstring).

    record (Dict[str, Any]): A record of :func:`~spacy_spert.io.records.doc_to_record` (``text``,
        ``entities``, ``relations``).
    config (LabelConfig): The names and labels to write; entities and relations whose label the config
        does not have are left out (relations of a left-out entity too).
    version (str): The ``model_version``.
    RETURNS (Dict[str, Any]): ``{"model_version", "score", "result"}``.
    """
    result: List[Dict[str, Any]] = []
    scores: List[Optional[float]] = []
    kept = set()
    for i, ent in enumerate(record["entities"]):
        label = config.entity_label(ent["label"])
        if label is None:
            continue
        region: Dict[str, Any] = {
            "id": region_id(i),
            "from_name": config.from_name,
            "to_name": config.to_name,
            "type": "labels",
            "value": {"start": ent["start"], "end": ent["end"], "text": ent["text"], "labels": [label]},
        }
        if ent.get("score") is not None:
            region["score"] = float(ent["score"])
        result.append(region)
        scores.append(ent.get("score"))
        kept.add(i)
    for rel in record["relations"]:
        label = config.relation_label(rel["label"])
        if label is None or rel["head"] not in kept or rel["tail"] not in kept:
            continue
        item: Dict[str, Any] = {
            "type": "relation",
            "from_id": region_id(rel["head"]),
            "to_id": region_id(rel["tail"]),
            "direction": "right",
            "labels": [label],
        }
        if rel.get("score") is not None:
            item["score"] = float(rel["score"])
        result.append(item)
        scores.append(rel.get("score"))
    return {"model_version": version, "score": task_score(scores), "result": result}


def record_to_task(
    record: Dict[str, Any],
    config: LabelConfig = DEFAULT_CONFIG,
    version: str = "",
    fields: Optional[Dict[str, Any]] = None,
    text_key: str = "text",
) -> Dict[str, Any]:
    """A record as a Label Studio task to import, with its prediction as pre-annotations:
    ``{"data": {...fields, KEY: text}, "predictions": [prediction]}``.

    record (Dict[str, Any]): A record of :func:`~spacy_spert.io.records.doc_to_record`.
    config (LabelConfig): The names, labels and text key (``config.text_key``) to write.
    version (str): The ``model_version``.
    fields (Optional[Dict[str, Any]]): The input's other fields, kept in ``data``.
    text_key (str): The input's text field, replaced by ``config.text_key`` in ``data``.
    RETURNS (Dict[str, Any]): The task.
    """
    data = {key: value for key, value in (fields or {}).items() if key != text_key}
    data[config.text_key] = record["text"]
    return {"data": data, "predictions": [record_to_prediction(record, config, version)]}
