"""Tag new sentences with a trained SpERT pipeline and describe what it found.

Without texts of one's own, :data:`SENTENCES` are used: they are written with
names, organisations and places that do not occur in the demo training data
(:data:`research.demo_data.HELD_OUT`), so the model has to
generalize.
"""

from typing import Iterable, List, Optional

from spacy.language import Language
from spacy.tokens import Doc

from spacy_spert.io.records import spert_spans_key
from spacy_spert.relations import get_relation_spans

SENTENCES = [
    "Priya Raman, an analyst at Kestrel Labs, lives in Tampere.",
    "Bluewater Analytics is headquartered in Valparaiso.",
    "Tomasz Nowak moved to Kraków in 2015.",
    "Harbor Freight Lines, a firm based in Santa Fe, hired Ingrid Solberg as a pilot.",
    "Kwame Asante has worked for Bluewater Analytics since 2008.",
    "Ingrid Solberg met Kwame Asante in Tampere last week.",
]


def describe(doc: Doc, spans_key: str = "sc") -> List[str]:
    """Lines describing the entities (with scores where the span group has
    them) and relations of a processed doc.

    doc (Doc): The doc.
    spans_key (str): The span group of the entities.
    RETURNS (List[str]): The text, then the entities, then one line per relation.
    """
    lines = [doc.text]
    group = doc.spans.get(spans_key, [])
    scores = group.attrs.get("scores") if len(group) else None
    ents = []
    for i, span in enumerate(group):
        score = f" {float(scores[i]):.2f}" if scores is not None and len(scores) == len(group) else ""
        ents.append(f"[{span.text}: {span.label_}{score}]")
    lines.append("  entities:  " + (" ".join(ents) if ents else "(none)"))
    relations = get_relation_spans(doc, spans_key)
    if not relations:
        lines.append("  relations: (none)")
    for k, rel in enumerate(relations):
        prefix = "  relations: " if k == 0 else "             "
        lines.append(
            f"{prefix}{rel.head.text} ({rel.head.label_}) --{rel.label}--> "
            f"{rel.tail.text} ({rel.tail.label_})  {rel.score:.2f}"
        )
    return lines


def demo(nlp: Language, texts: Optional[Iterable[str]] = None, spans_key: Optional[str] = None) -> List[str]:
    """Tag texts and describe each doc.

    nlp (Language): A pipeline with a ``spert`` component.
    texts (Optional[Iterable[str]]): The texts (default: :data:`SENTENCES`).
    spans_key (Optional[str]): The span group of the entities (default: the
        ``spert`` component's).
    RETURNS (List[str]): Lines: each doc's description, then an empty line.
    """
    key = spans_key if spans_key is not None else spert_spans_key(nlp)
    lines: List[str] = []
    for doc in nlp.pipe(list(texts) if texts else SENTENCES):
        lines.extend(describe(doc, key))
        lines.append("")
    return lines
