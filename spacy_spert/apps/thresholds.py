"""``tune-thresholds``: per-label thresholds of a trained pipeline, chosen on
labelled dev data to maximise micro F1, with no retraining.

The ``spert`` component keeps a threshold per entity label
(``entity_thresholds``: a span whose best label's score is below its label's
threshold is no entity) and per relation label (``relation_thresholds``),
each falling back to the global one. Scores stay the model's; thresholds only
decide what is kept. :func:`tune_thresholds` chooses them:

1. The pipeline runs once on the dev docs with every threshold at the floor
   (the lowest the search may choose: ``floor`` or lower settings; SpERT's
   entities: 0, the argmax alone), so every prediction a higher threshold
   keeps is seen, with its score.
2. The predictions are scored against the gold data as the ``spert`` scorer
   does (NER: ``(start, end, type)``; relations: strict).
3. Entity thresholds are searched first, for NER micro F1; then relation
   thresholds, for RE strict micro F1, with the tuned entity thresholds (a
   relation whose head or tail is no longer an entity is gone). The search is
   :func:`~.threshold_search.search_thresholds` (exact, per label, coordinate
   ascent); labels with fewer than ``min_support`` gold items on dev keep
   the global threshold.

The F1 values it reports are computed from the collected predictions, which
is exact but for one bound of inference: relation pairs are formed among at
most ``max_pair_entities_per_token`` kept spans per pairing group, so with
many more entities at the floor than a trained model keeps (SpERT.MT, whose
entities the floor decides) some pairs may go unscored.

:func:`tune_pipeline` is the command: it loads MODEL, tunes on DEV and writes
the tuned pipeline (``config.cfg`` and the component's cfg carry the
thresholds) with ``thresholds.json`` (the report) to a new folder, complete or
absent.
"""

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.training import Example

from ..io.files import check_output_path, write_atomic
from ..pipeline.scorer import entity_keys, make_span_mapper, relation_items, relation_keys
from .threshold_search import LabelScores, micro_f1, prf, search_thresholds

# The lowest threshold the search chooses by default (lower settings of the
# pipeline lower it).
DEFAULT_FLOOR = 0.05
# Labels with fewer gold items on dev keep the global threshold.
DEFAULT_MIN_SUPPORT = 10
REPORT_NAME = "thresholds.json"
# The tasks, their names in the report, tables and the component's cfg.
TASKS = (("entities", "NER micro F1", "entity_thresholds"), ("relations", "RE strict micro F1", "relation_thresholds"))

# A predicted entity of one doc in its own offsets: (doc index, start, end, label)
# (label None: a relation endpoint that does not record it).
EntityRef = Tuple[int, int, int, Optional[str]]


def find_spert(nlp: Language, name: Optional[str] = None) -> Tuple[str, Any]:
    """The ``spert`` component of a pipeline.

    nlp (Language): The pipeline.
    name (Optional[str]): The component's name; None: the only ``spert``.
    RETURNS (Tuple[str, SpERT]): Its name and the component.
    RAISES: ValueError if there is no such component, or several and no name.
    """
    from ..pipeline.spert import SpERT

    spert = [(n, pipe) for n, pipe in nlp.pipeline if isinstance(pipe, SpERT)]
    found = [(n, pipe) for n, pipe in spert if name is None or n == name]
    if len(found) != 1:
        names = ", ".join(n for n, _ in spert) or "none"
        which = f"named '{name}'" if name is not None else "(give --component)"
        raise ValueError(f"expected one spert component {which}; the pipeline's spert components: {names}")
    return found[0]


@contextmanager
def thresholds_set(component: Any, entities: Dict[str, float], relations: Dict[str, float]) -> Iterator[None]:
    """Set a component's per-label thresholds within the block, and its own
    back after it (also on an error)."""
    old = dict(component.cfg["entity_thresholds"]), dict(component.cfg["relation_thresholds"])
    component.set_thresholds(entities, relations)
    try:
        yield
    finally:
        component.set_thresholds(*old)


def run_pipeline(nlp: Language, examples: Sequence[Example]) -> List[Example]:
    """The examples with the pipeline's predictions (``nlp.pipe`` on copies of
    their predicted docs, as ``nlp.evaluate`` runs them).

    RETURNS (List[Example]): New examples: the predicted docs and the references.
    """
    docs = nlp.pipe((eg.predicted.copy() for eg in examples), batch_size=nlp.batch_size)
    return [Example(doc, eg.reference) for doc, eg in zip(docs, examples)]


class Collected:
    """The predictions of a pipeline on labelled examples, scored per item.

    entities: per label, the (score, correct) of each predicted entity by
    its scored item (doc, mapped key); entity_scores: the score of each
    predicted entity by its own offsets and label (EntityRef), to drop the
    relations of entities a threshold drops; relations: (label, scored item,
    score, correct, head, tail) of each predicted relation (head and tail:
    EntityRef, None for a given entity); gold_entities, gold_relations: the
    gold items per label.
    """

    def __init__(self) -> None:
        self.entities: Dict[str, Dict[Tuple[int, Any], Tuple[float, bool]]] = {}
        self.entity_scores: Dict[EntityRef, float] = {}
        self.relations: List[Tuple[str, Tuple[int, Any], float, bool, Optional[EntityRef], Optional[EntityRef]]] = []
        self.gold_entities: Dict[str, int] = {}
        self.gold_relations: Dict[str, int] = {}

    @classmethod
    def from_examples(
        cls, examples: Sequence[Example], spans_key: str, symmetric: Sequence[str], given_entities: bool
    ) -> "Collected":
        """Score the predictions of processed examples as ``score_spert`` does.

        RETURNS (Collected): The predictions and the gold counts.
        """
        out = cls()
        for i, eg in enumerate(examples):
            mapper = make_span_mapper(eg)
            for key in set(entity_keys(eg.reference, spans_key)):
                out.gold_entities[key[-1]] = out.gold_entities.get(key[-1], 0) + 1
            gold_rels = set(relation_keys(eg.reference, spans_key, symmetric))
            for key in gold_rels:
                out.gold_relations[key[-1]] = out.gold_relations.get(key[-1], 0) + 1
            if not given_entities:
                gold_ents = set(entity_keys(eg.reference, spans_key))
                group = eg.predicted.spans.get(spans_key, [])
                scores = group.attrs.get("scores", [1.0] * len(group)) if len(group) else []
                keys = entity_keys(eg.predicted, spans_key, mapper)
                for span, key, score in zip(group, keys, scores):
                    out.entity_scores[(i, span.start, span.end, span.label_)] = float(score)
                    label_items = out.entities.setdefault(key[-1], {})
                    best = max(float(score), label_items.get((i, key), (float("-inf"), False))[0])
                    label_items[(i, key)] = (best, key in gold_ents)
            for key, rel in relation_items(eg.predicted, spans_key, symmetric, mapper):
                ends: List[Optional[EntityRef]] = [
                    None if given_entities else (i, rel[f"{side}_start"], rel[f"{side}_end"], rel.get(f"{side}_label"))
                    for side in ("head", "tail")
                ]
                out.relations.append((key[-1], (i, key), float(rel["score"]), key in gold_rels, ends[0], ends[1]))
        return out

    def entity_scores_by_label(self, labels: Sequence[str]) -> Dict[str, LabelScores]:
        """RETURNS (Dict[str, LabelScores]): The entities of each label."""
        return {
            label: LabelScores.make(
                [s for s, _ in self.entities.get(label, {}).values()],
                [c for _, c in self.entities.get(label, {}).values()],
                self.gold_entities.get(label, 0),
            )
            for label in labels
        }

    def relation_scores_by_label(
        self, labels: Sequence[str], entity_thresholds: Optional[Dict[str, float]]
    ) -> Dict[str, LabelScores]:
        """The relations of each label whose head and tail are entities at the
        entity thresholds (None: all), one per scored item (the highest score).

        RETURNS (Dict[str, LabelScores]): The relations of each label.
        """

        def kept(ref: Optional[EntityRef]) -> bool:
            if ref is None or ref[3] is None or entity_thresholds is None or ref not in self.entity_scores:
                return True
            return bool(numpy.float32(self.entity_scores[ref]) >= numpy.float32(entity_thresholds[ref[3]]))

        items: Dict[str, Dict[Tuple[int, Any], Tuple[float, bool]]] = {label: {} for label in labels}
        for label, item, score, correct, head, tail in self.relations:
            if kept(head) and kept(tail):
                label_items = items.setdefault(label, {})
                best = max(score, label_items.get(item, (float("-inf"), False))[0])
                label_items[item] = (best, correct)
        return {
            label: LabelScores.make(
                [s for s, _ in items[label].values()],
                [c for _, c in items[label].values()],
                self.gold_relations.get(label, 0),
            )
            for label in labels
        }


def tune_thresholds(
    nlp: Language,
    examples: Sequence[Example],
    *,
    component_name: Optional[str] = None,
    min_support: int = DEFAULT_MIN_SUPPORT,
    floor: float = DEFAULT_FLOOR,
) -> Dict[str, Any]:
    """Choose the per-label thresholds of a pipeline's ``spert`` component on
    labelled examples (see the module's docstring). The pipeline is left as it was.

    nlp (Language): The trained pipeline.
    examples (Sequence[Example]): The dev data (predicted docs not processed).
    component_name (Optional[str]): The ``spert`` component; None: the only one.
    min_support (int): Labels with fewer gold items keep the global threshold.
    floor (float): The lowest threshold to choose.
    RETURNS (Dict[str, Any]): The report: ``entity_thresholds`` and
        ``relation_thresholds`` (the settings to save: the tuned labels whose
        threshold is not the fallback), and per task (``entities``,
        ``relations``) the micro F1 before and after and per label its
        support, whether it was tuned, and its threshold, P, R and F1 before and after.
    RAISES: ValueError for min_support < 0 or no examples.
    """
    if min_support < 0:
        raise ValueError(f"min_support must be 0 or more, got {min_support}")
    if not examples:
        raise ValueError("no dev examples to tune the thresholds on")
    name, component = find_spert(nlp, component_name)
    given = bool(component.suggester.gives_entities)
    before = component.thresholds
    threshold = float(component.cfg["threshold"])
    entity_default = component.model.attrs["objective"].default_entity_threshold(threshold)
    fallback = {
        "entities": dict.fromkeys(component.entity_labels, entity_default),
        "relations": dict.fromkeys(component.relation_labels, threshold),
    }
    floors = {task: min([floor, *before[task].values(), *fallback[task].values()]) for task, _, _ in TASKS}
    low_entities = {} if given else dict.fromkeys(component.entity_labels, floors["entities"])
    low_relations = dict.fromkeys(component.relation_labels, floors["relations"])
    with thresholds_set(component, low_entities, low_relations):
        processed = run_pipeline(nlp, examples)
    symmetric = component.cfg["symmetric_relations"]
    collected = Collected.from_examples(processed, component.cfg["spans_key"], symmetric, given)

    report: Dict[str, Any] = {"component": name, "min_support": min_support, "floor": floors, "threshold": threshold}

    def tune(
        task: str, labels_before: Dict[str, Any], labels: Dict[str, Any], gold: Dict[str, int]
    ) -> Dict[str, float]:
        """Search a task's thresholds and add its part of the report
        (labels_before: the scores the untuned thresholds are judged on)."""
        other = sum(n for label, n in gold.items() if label not in labels)
        after = search_thresholds(
            labels, before[task], fallback[task], floor=floors[task], min_support=min_support, other_gold=other
        )
        report[task] = task_report(labels_before, labels, before[task], after, min_support, other)
        return after

    entities_after: Dict[str, float] = {}
    report["entities"] = None  # given entities: nothing to tune
    if not given:
        labels = collected.entity_scores_by_label(component.entity_labels)
        entities_after = tune("entities", labels, labels, collected.gold_entities)
    # the relations of the entities kept before, and after tuning
    relation_labels = component.relation_labels
    labels_before = collected.relation_scores_by_label(relation_labels, None if given else before["entities"])
    labels = collected.relation_scores_by_label(relation_labels, None if given else entities_after)
    relations_after = tune("relations", labels_before, labels, collected.gold_relations)
    # what is saved: the labels whose threshold is not their fallback
    for task, key, after in (
        ("entities", "entity_thresholds", entities_after),
        ("relations", "relation_thresholds", relations_after),
    ):
        report[key] = {label: value for label, value in after.items() if value != fallback[task][label]}
    return report


def task_report(
    before_labels: Dict[str, LabelScores],
    after_labels: Dict[str, LabelScores],
    before: Dict[str, float],
    after: Dict[str, float],
    min_support: int,
    other_gold: int,
) -> Dict[str, Any]:
    """One task's part of the report.

    before_labels, after_labels (Dict[str, LabelScores]): The predictions by
        label before and after tuning (relations: with the entities of each).
    before, after (Dict[str, float]): The thresholds.
    min_support (int): The support a label needed to be tuned.
    other_gold (int): Gold items of types the labels do not cover.
    RETURNS (Dict[str, Any]): micro_f_before, micro_f_after and labels
        (label -> support, tuned, threshold_before, threshold_after, p/r/f_before, p/r/f_after).
    """
    labels = {}
    for label, item in after_labels.items():
        old, new = prf(before_labels[label], before[label]), prf(item, after[label])
        labels[label] = {
            "support": item.support,
            "tuned": item.support >= min_support,
            "threshold_before": before[label],
            "threshold_after": after[label],
            **{f"{m}_before": old[m] for m in ("p", "r", "f")},
            **{f"{m}_after": new[m] for m in ("p", "r", "f")},
        }
    return {
        "micro_f_before": micro_f1(before_labels, before, other_gold),
        "micro_f_after": micro_f1(after_labels, after, other_gold),
        "labels": labels,
    }


def report_table(report: Dict[str, Any]) -> str:
    """The report as a plain-text table: per task and label the dev support,
    threshold and F1 before and after (F1 as percentages), then the micro F1.

    report (Dict[str, Any]): As returned by :func:`tune_thresholds`.
    RETURNS (str): The table.
    """
    header = f"{'label':<20}{'support':>8}{'thr before':>12}{'thr after':>11}{'F1 before':>11}{'F1 after':>10}"
    lines = []
    for task, title, _ in TASKS:
        part = report[task]
        if part is None:
            lines += [f"{task}: given by the suggester, not tuned", ""]
            continue
        lines += [f"{task} ({title} on dev)", header, "-" * len(header)]
        for label, row in part["labels"].items():
            mark = "" if row["tuned"] else " *"
            lines.append(
                f"{label[:19]:<20}{row['support']:>8}{row['threshold_before']:>12.4g}"
                f"{row['threshold_after']:>11.4g}{100 * row['f_before']:>11.2f}{100 * row['f_after']:>10.2f}{mark}"
            )
        lines.append(
            f"{'micro':<20}{'':>8}{'':>12}{'':>11}{100 * part['micro_f_before']:>11.2f}{100 * part['micro_f_after']:>10.2f}"
        )
        lines.append("")
    lines.append(f"* not tuned (dev support below {report['min_support']}): the global threshold")
    return "\n".join(lines)


def tune_pipeline(
    model: Union[str, Path],
    dev_path: Path,
    output_dir: Path,
    *,
    component_name: Optional[str] = None,
    min_support: int = DEFAULT_MIN_SUPPORT,
    floor: float = DEFAULT_FLOOR,
    report_json: Optional[Path] = None,
    gpu_id: int = -1,
) -> Dict[str, Any]:
    """Tune a pipeline's thresholds on a dev corpus and write the tuned pipeline.

    model (Union[str, Path]): The pipeline (a folder or a package name).
    dev_path (Path): The dev corpus (.spacy, gold entities and relations).
    output_dir (Path): The folder for the tuned pipeline: new, empty or an
        earlier pipeline (replaced); never MODEL or DEV, nor a folder holding them.
    component_name, min_support, floor: See :func:`tune_thresholds`.
    report_json (Optional[Path]): Also write the report there (it is always
        written to OUTPUT_DIR/thresholds.json).
    gpu_id (int): The GPU, -1 for the CPU.
    RETURNS (Dict[str, Any]): The report, with the model, dev and output paths.
    RAISES: ValueError for an output that would replace an input (nothing is
        read then) or bad settings; OSError for unreadable inputs.
    """
    import spacy
    from spacy.training import Corpus

    from ..relations import install_extensions

    check_output_folder(output_dir, model, dev_path)
    if report_json is not None:
        check_output_path(report_json, dev_path, read_suffixes=(".spacy",))
        check_output_path(report_json, model)
    if not Path(dev_path).exists():
        raise ValueError(f"{dev_path}: no such dev corpus")
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    install_extensions()  # the dev docs' relations
    nlp = spacy.load(model)
    examples = list(Corpus(str(dev_path))(nlp))
    report = tune_thresholds(nlp, examples, component_name=component_name, min_support=min_support, floor=floor)
    report = {"model": str(model), "dev": str(dev_path), "output": str(output_dir), **report}
    _, component = find_spert(nlp, report["component"])
    component.set_thresholds(report["entity_thresholds"], report["relation_thresholds"])
    data = (json.dumps(report, indent=2) + "\n").encode("utf8")
    write_pipeline(nlp, report["component"], Path(output_dir), {REPORT_NAME: data})
    if report_json is not None:
        write_atomic(data, Path(report_json))
    return report


def check_output_folder(output_dir: Union[str, Path], *inputs: Union[str, Path]) -> None:
    """Refuse an output folder that is an input, holds one (it would be
    replaced) or lies in one, or that is not a folder a pipeline may replace
    (a file, or a folder with files but no ``config.cfg``).

    RAISES: ValueError naming the paths.
    """
    output = Path(output_dir)
    resolved = output.resolve()
    for source in inputs:
        check_output_path(output, source)
        path = Path(source)
        if not path.exists():
            continue  # a package name
        source_resolved = path.resolve()
        if source_resolved.is_relative_to(resolved) or resolved.is_relative_to(source_resolved):
            raise ValueError(
                f"the output {output} and the input {source} lie one in the other: "
                "choose another output folder, nothing was written"
            )
    if output.exists() and not output.is_dir():
        raise ValueError(f"the output {output} is a file, not a folder: choose another output, nothing was written")
    if output.is_dir() and any(output.iterdir()) and not (output / "config.cfg").exists():
        raise ValueError(
            f"the output folder {output} holds files and no pipeline (config.cfg): "
            "choose a new or empty folder, nothing was written"
        )


def write_pipeline(nlp: Language, component_name: str, output_dir: Path, extra: Dict[str, bytes]) -> None:
    """Write a pipeline whose spert component's thresholds were set: to a new
    folder next to ``output_dir``, renamed into place when complete (an
    earlier pipeline there is replaced), so the output is complete or absent.
    ``config.cfg`` gets the component's thresholds too, so that the config and
    the component's cfg agree (``spacy package``, ``nlp.config``).

    extra (Dict[str, bytes]): Further files of the folder (name -> content).
    """
    from spacy.util import load_config

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f"{output_dir.name}.tmp-{secrets.token_hex(4)}")
    old = output_dir.with_name(f"{output_dir.name}.old-{secrets.token_hex(4)}")
    try:
        nlp.to_disk(tmp)
        config = load_config(tmp / "config.cfg", interpolate=False)
        settings = config["components"][component_name]
        _, component = find_spert(nlp, component_name)
        for _, _, key in TASKS:
            settings[key] = dict(component.cfg[key])
        config.to_disk(tmp / "config.cfg")
        for name, data in extra.items():
            (tmp / name).write_bytes(data)
        moved = output_dir.exists()
        if moved:  # an earlier pipeline (check_output_folder): aside until the new one is in place
            os.replace(output_dir, old)
        try:
            os.replace(tmp, output_dir)
        except BaseException:
            if moved:
                os.replace(old, output_dir)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
