"""``spacy train`` with SpERT's learning-rate schedule fitted to the data.

    python scripts/train.py CONFIG --output DIR [--gpu-id -1] [--warmup-fraction 0.1]
        [--keep-eval-frequency] [--dry-run] [--paths.train ...] [--training.max_epochs 20] ...

SpERT warms the learning rate up linearly over the first 10% of all updates
and then decays it linearly to 0. spaCy's ``warmup_linear.v1`` schedule needs
these as step counts, which depend on the size of the training set and the
number of epochs; a config can only hold literal numbers. This script:

1. loads the config with the given overrides (the same ``--section.key value``
   arguments as ``spacy train``);
2. counts the non-empty docs of the training corpus (``spacy.Corpus.v1``
   .spacy files), reads the batch size (``spacy.batch_by_sequence.v1``) and
   ``training.max_epochs``;
3. sets ``training.optimizer.learn_rate.total_steps`` = max_epochs x
   ceil(n_docs / batch size), ``warmup_steps`` = round(warmup_fraction x
   total_steps) and ``training.eval_frequency`` = steps per epoch (evaluate
   once per epoch, as SpERT does);
4. runs spaCy's ``train`` (same output, same table, model-best/model-last).

A value given explicitly on the command line is never replaced, and nothing
is computed when the config does not have this shape (another batcher or
schedule, ``max_epochs`` <= 0): the config is then used as it is.
"""
import argparse
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from spacy import util
from spacy.cli._util import import_code, parse_config_overrides
from spacy.tokens import DocBin
from spacy.training.corpus import walk_corpus
from wasabi import msg

SCHEDULE_KEY = "training.optimizer.learn_rate"


def _get(config: Dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value[part]
    return value


def count_docs(path: Path, limit: int = 0) -> int:
    """The number of non-empty docs in a .spacy file or a folder of them (the
    docs spaCy's Corpus yields: empty docs are skipped)."""
    n = 0
    for loc in walk_corpus(path, ".spacy"):
        doc_bin = DocBin().from_disk(loc)
        n += sum(1 for tokens in doc_bin.tokens if len(tokens))
    return min(n, limit) if limit and limit > 0 else n


def plan_schedule(
    config_path: Path, overrides: Dict[str, Any], warmup_fraction: float = 0.1, keep_eval_frequency: bool = False
) -> Dict[str, Any]:
    """The overrides to add for SpERT's schedule (empty when the config does
    not have the expected shape); prints what it computed and why."""
    config = util.load_config(config_path, overrides=overrides, interpolate=True)
    T = config["training"]
    epochs = T.get("max_epochs", 0)
    batcher = T.get("batcher", {})
    schedule = _get(config, SCHEDULE_KEY)
    if not isinstance(schedule, dict) or schedule.get("@schedules") != "warmup_linear.v1":
        msg.info(f"{SCHEDULE_KEY} is not warmup_linear.v1: using the config's learning rate as it is")
        return {}
    if epochs is None or epochs <= 0:
        msg.info("training.max_epochs is not positive: using the config's schedule as it is")
        return {}
    size = batcher.get("size")
    if batcher.get("@batchers") != "spacy.batch_by_sequence.v1" or not isinstance(size, int) or batcher.get("get_length") is not None:
        msg.info("the batcher is not spacy.batch_by_sequence.v1 with an integer size: using the config's schedule as it is")
        return {}
    corpus = _get(config, T["train_corpus"])
    if corpus.get("@readers") != "spacy.Corpus.v1":
        msg.info(f"{T['train_corpus']} is not spacy.Corpus.v1: using the config's schedule as it is")
        return {}
    train_path = Path(corpus["path"])
    n_docs = count_docs(train_path, corpus.get("limit", 0))
    if n_docs == 0:
        msg.fail(f"No training docs in {train_path}", exits=1)
    steps_per_epoch = math.ceil(n_docs / size)
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_fraction * total))
    computed = {
        f"{SCHEDULE_KEY}.total_steps": total,
        f"{SCHEDULE_KEY}.warmup_steps": warmup,
    }
    if not keep_eval_frequency:
        computed["training.eval_frequency"] = steps_per_epoch
    added = {key: value for key, value in computed.items() if key not in overrides}
    msg.info(
        f"SpERT schedule: {n_docs} training docs in {train_path}, {size} per batch -> "
        f"{steps_per_epoch} steps per epoch x {epochs} epochs = {total} steps, "
        f"warmup {warmup} ({warmup_fraction:g})"
    )
    for key, value in computed.items():
        if key in added:
            msg.text(f"  --{key} {value}")
        else:
            msg.text(f"  --{key} {overrides[key]} (given on the command line; computed: {value})")
    return added


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        description="spacy train with the SpERT learning-rate schedule fitted to the training set "
        "(other arguments are config overrides, as for spacy train)",
    )
    parser.add_argument("config_path", type=Path, help="training config")
    parser.add_argument("--output", "-o", type=Path, default=None, help="output directory")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1, help="GPU id, -1 for CPU")
    parser.add_argument("--code", "-c", type=Path, default=None, help="Python file with registered functions")
    parser.add_argument("--warmup-fraction", type=float, default=0.1, help="warmup share of all steps (0.1)")
    parser.add_argument(
        "--keep-eval-frequency", action="store_true", help="do not set eval_frequency to the steps per epoch"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the computed overrides and stop")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_config_overrides(rest)
    import_code(args.code)
    overrides.update(plan_schedule(args.config_path, overrides, args.warmup_fraction, args.keep_eval_frequency))
    if args.dry_run:
        return
    from spacy.cli.train import train

    train(args.config_path, args.output, use_gpu=args.gpu_id, overrides=overrides)


if __name__ == "__main__":
    main(sys.argv[1:])
