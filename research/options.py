"""The options that several research commands share, each defined once.

Each is an ``Annotated`` alias that carries the option's name and help; a
command takes it as ``gpu_id: GpuId = -1``, its default in its own signature,
so that two commands can share an option and differ in its default
(``--n-docs``). An option whose help differs from command to command stays in
the command's own signature, where its help says what it is for there.
"""

from pathlib import Path
from typing import Annotated

from spacy.cli._util import Arg, Opt

# Most commands that measure (benchmark, seeds, thresholds, speed, memory, throughput, ...)
GpuId = Annotated[int, Opt("--gpu-id", help="GPU id, -1 for CPU")]
Results = Annotated[
    Path, Opt("--results", help="Results JSON file (the tables go to the .md next to it)", show_default=False)
]
Seed = Annotated[int, Opt("--seed", help="Random seed")]

# Training: benchmark, seeds (kfold: the config)
Config = Annotated[Path, Arg(help="Training config", show_default=False)]
TrainCorpus = Annotated[Path, Opt("--train", help="Training corpus (.spacy)", show_default=False)]
TestCorpus = Annotated[
    Path, Opt("--test", help="Test corpus (.spacy): logged during training, scored after", show_default=False)
]
Epochs = Annotated[int, Opt("--epochs", help="Training epochs")]
SkipSpeed = Annotated[bool, Opt("--skip-speed", help="Do not time inference")]

# Over seeds: seeds, thresholds
Seeds = Annotated[str, Opt("--seeds", help="Comma-separated seeds")]

# Speed and memory of a trained pipeline: speed, memory
TaggedCorpus = Annotated[Path, Opt("--test", help="Corpus whose texts are tagged", show_default=False)]

# Throughput: throughput, ray-throughput
ThroughputCorpus = Annotated[Path, Arg(help=".spacy file whose texts are tagged", show_default=False)]
NDocs = Annotated[int, Opt("--n-docs", help="Docs per run: the corpus's texts repeated and shuffled")]
ShuffleSeed = Annotated[int, Opt("--seed", help="Seed of the shuffle")]
Rounds = Annotated[int, Opt("--repeats", help="Alternating rounds; docs/s from the median")]
