"""Gold annotation: reading the entities and relations of a training Example
and aligning them to the tokens of its predicted doc.

Gold entities are the spans of ``eg.reference.spans[spans_key]``, gold
relations the dicts of ``eg.reference._.relations`` (see ``relations.py``).
When the predicted doc is tokenized differently, each entity is mapped through
the Example's alignment; an entity that does not align to whole predicted
tokens (and every relation that involves it) is left out of training.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from spacy.tokens import Span
from spacy.training import Example

from ..relations import RELATIONS_ATTR, EntityIndex, validate_relation


@dataclass
class Gold:
    """The gold annotation of one Example in the predicted doc's tokens.

    entities: (start, end, label_id) per aligned entity, label_id = i + 1 for
        entity label i (0 means "no entity").
    relations: (head, tail, relation_id) per relation whose two arguments
        align; head and tail index ``entities``.
    """

    entities: List[Tuple[int, int, int]] = field(default_factory=list)
    relations: List[Tuple[int, int, int]] = field(default_factory=list)


def read_gold(
    eg: Example,
    *,
    spans_key: str,
    entity_labels: Sequence[str],
    relation_labels: Sequence[str],
    where: str = "example",
    component: str = "spert",
    entities: Optional[Sequence[Span]] = None,
    source: Optional[str] = None,
) -> Gold:
    """Read and align the gold entities and relations of an Example.

    eg (Example): The example.
    spans_key (str): The span group of the gold entities.
    entity_labels (Sequence[str]): The entity types the component knows.
    relation_labels (Sequence[str]): The relation types the component knows.
    where (str): Names the example in error messages, e.g. "training example 3".
    component (str): The component's name, for error messages.
    entities (Optional[Sequence[Span]]): The gold entities of the reference
        doc, when they are not ``ref.spans[spans_key]`` (given entities).
    source (Optional[str]): Where those are, for error messages ("doc.ents").
    RETURNS (Gold): The aligned annotation.
    RAISES: ValueError naming the example, the relation and the field for an
        unknown label, a malformed relation or a relation whose argument is
        not an entity of the span group.
    """
    ref, pred = eg.reference, eg.predicted
    ent_ids = {label: i + 1 for i, label in enumerate(entity_labels)}
    rel_ids = {label: i for i, label in enumerate(relation_labels)}
    same_tokens = len(ref) == len(pred) and all(a.text == b.text for a, b in zip(ref, pred))
    gold = Gold()
    # reference boundaries -> index into gold.entities, or None when the
    # entity does not align to the predicted tokens
    index: EntityIndex[Optional[int]] = EntityIndex()
    if entities is None:
        entities = ref.spans.get(spans_key, [])
        source = f"doc.spans['{spans_key}']"
    for span in entities:
        if span.label_ not in ent_ids:
            raise ValueError(
                f"{where}: entity '{span.text}' has the label '{span.label_}', which the "
                f"spert component '{component}' does not know (labels: {list(entity_labels)})"
            )
        aligned = [span] if same_tokens else eg.get_aligned_spans_y2x([span], allow_overlap=True)
        entity = None
        if aligned:
            entity = len(gold.entities)
            gold.entities.append((aligned[0].start, aligned[0].end, ent_ids[span.label_]))
        index.add(span.start, span.end, span.label_, entity)
    for j, rel in enumerate(ref._.get(RELATIONS_ATTR)):
        validate_relation(ref, rel, where=f"{where}, relation {j}")
        if rel["label"] not in rel_ids:
            raise ValueError(
                f"{where}, relation {j}: the label '{rel['label']}' is not known to the spert "
                f"component '{component}' (labels: {list(relation_labels)})"
            )
        ends = []
        for side in ("head", "tail"):
            start, end, label = rel[f"{side}_start"], rel[f"{side}_end"], rel.get(f"{side}_label")
            matches = index.matches(start, end, label)
            if not matches:
                raise ValueError(
                    f"{where}, relation {j}: the {side} {start}:{end} "
                    f"('{ref[start:end].text}'{'' if label is None else ', ' + label}) "
                    f"is not an entity in {source}"
                )
            ends.append(matches[0])
        head, tail = ends
        if head is not None and tail is not None:  # both arguments align to the predicted tokens
            gold.relations.append((head, tail, rel_ids[rel["label"]]))
    return gold
