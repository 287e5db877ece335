"""Tag new sentences with a trained SpERT pipeline and print what it found.

    python scripts/demo.py [MODEL] [--text "A sentence." ...] [--spans-key sc]

MODEL defaults to training/demo/model-last (made by `spacy project run demo`);
any spaCy pipeline with a ``spert`` component works, also an installed package
name. Without --text, the sentences below are used: they are written with
names, organisations and places that do not occur in the demo training data
(see HELD_OUT in scripts/make_demo_data.py), so the model has to generalize.
"""
import argparse
import sys
from typing import List, Optional

import spacy

import spacy_spert  # noqa: F401  (registers the spert factory and doc._.relations)
from spacy_spert import get_relation_spans

SENTENCES = [
    "Priya Raman, an analyst at Kestrel Labs, lives in Tampere.",
    "Bluewater Analytics is headquartered in Valparaiso.",
    "Tomasz Nowak moved to Kraków in 2015.",
    "Harbor Freight Lines, a firm based in Santa Fe, hired Ingrid Solberg as a pilot.",
    "Kwame Asante has worked for Bluewater Analytics since 2008.",
    "Ingrid Solberg met Kwame Asante in Tampere last week.",
]


def describe(doc, spans_key: str = "sc") -> List[str]:
    """Lines describing the entities and relations of a processed doc."""
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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="training/demo/model-last", help="pipeline path or package")
    parser.add_argument("--text", action="append", default=None, help="a sentence to tag (repeatable)")
    parser.add_argument("--spans-key", default=None, help="span group of the entities (default: the component's)")
    args = parser.parse_args(argv)
    nlp = spacy.load(args.model)
    spans_key = args.spans_key
    if spans_key is None:
        spert = next((pipe for _, pipe in nlp.pipeline if hasattr(pipe, "relation_labels")), None)
        spans_key = spert.cfg["spans_key"] if spert is not None else "sc"
    texts = args.text or SENTENCES
    print(f"Pipeline {args.model}: {nlp.pipe_names}\n")
    for doc in nlp.pipe(texts):
        print("\n".join(describe(doc, spans_key)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
