"""Collect the SpERT.MT ablation results into one Markdown table.

    python scripts/ablation_table.py --spert results/conll04-conll04_minilm-seed0.json
        --mt-prefix results/conll04-conll04_mt_minilm --seed 0 --output TABLE.md

Reads the results files that ``scripts/benchmark.py`` wrote for SpERT
(--spert), SpERT.MT (``{mt-prefix}-seed{seed}.json``) and SpERT.MT without
each of its three parts (``{mt-prefix}-no_multitask-seed{seed}.json``,
``-no_iou_loss``, ``-no_entity_logits``), and writes a table of NER and
relation F1 (micro and macro) with the difference to SpERT.MT. A missing
results file is reported as a row of dashes, not an error, so the table can be
written while runs are still going.
"""
import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

COLUMNS = [
    ("ner_micro", "NER micro F1"),
    ("ner_macro", "NER macro F1"),
    ("rel_strict_micro", "RE strict micro F1"),
    ("rel_strict_macro", "RE strict macro F1"),
    ("rel_boundaries_micro", "RE boundaries micro F1"),
]
ABLATIONS = [
    ("", "SpERT.MT"),
    ("-no_multitask", "SpERT.MT - multitask heads (-MTL)"),
    ("-no_iou_loss", "SpERT.MT - IoU-scaled loss (-EIL)"),
    ("-no_entity_logits", "SpERT.MT - entity logits in relations"),
]


def read(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf8")) if path.exists() else None


def table(rows: List[Tuple[str, Path, Optional[Dict[str, Any]]]], reference: Optional[Dict[str, Any]]) -> str:
    """A Markdown table: one row per (name, results file, results); the
    difference to ``reference`` (SpERT.MT) follows each F1 in brackets."""
    head = "| model | " + " | ".join(title for _, title in COLUMNS) + " | results file |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, path, results in rows:
        cells = []
        for key, _ in COLUMNS:
            if results is None:
                cells.append("–")
                continue
            f = results["metrics"][key]["f"]
            if reference is not None and results is not reference:
                cells.append(f"{f:.2f} ({f - reference['metrics'][key]['f']:+.2f})")
            else:
                cells.append(f"{f:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | `{path}` |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spert", type=Path, required=True)
    parser.add_argument("--mt-prefix", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    rows = [("SpERT", args.spert, read(args.spert))]
    for suffix, name in ABLATIONS:
        path = Path(f"{args.mt_prefix}{suffix}-seed{args.seed}.json")
        rows.append((name, path, read(path)))
    reference = rows[1][2]
    found = [r for _, _, r in rows if r is not None]
    text = table(rows, reference)
    if found:
        first = found[0]
        text += (
            f"\nF1 x 100 on {first['test']}, model-last after {first['epochs']} epochs on {first['train']}, "
            f"seed {first['seed']}; in brackets: the difference to SpERT.MT. "
            f"Versions: {', '.join(f'{k} {v}' for k, v in first['versions'].items())}.\n"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
