"""SpERT's learning-rate schedule, fitted to the training corpus from the config.

SpERT warms the learning rate up linearly over the first 10% of all updates and
then decays it linearly to 0 at the end of the last epoch. thinc's
``warmup_linear.v1`` does exactly this, but takes the two step counts as
literal numbers, and these depend on the size of the training set.
``spacy-spert.warmup_linear_epochs.v1`` derives them from the config, so that
``python -m spacy train CONFIG --paths.train T --paths.dev D`` keeps SpERT's
schedule for any corpus and any number of epochs::

    [training.optimizer.learn_rate]
    @schedules = "spacy-spert.warmup_linear_epochs.v1"
    initial_rate = 0.00005
    warmup_fraction = 0.1
    train_path = ${paths.train}
    batch_size = ${training.batcher.size}
    max_epochs = ${training.max_epochs}
    limit = ${corpora.train.limit}

With ``n`` the number of docs ``spacy.Corpus.v1`` reads from ``train_path``
(the non-empty ones, at most ``limit``):

    steps per epoch = ceil(n / batch_size)   (spacy.batch_by_sequence.v1 without get_length)
    total steps     = max_epochs x steps per epoch
    warmup steps    = round(warmup_fraction x total steps), at least 1 if warmup_fraction > 0

and the rate at step ``t`` is the one of ``warmup_linear.v1`` with these
numbers (same arithmetic, so the same floats).

The corpus is read lazily. In thinc 8 a schedule is an iterator, and thinc's
``Optimizer`` draws the first value (step 0) as soon as it is created, which
``spacy debug config`` also does. That value does not depend on the corpus
(0 during warmup, ``initial_rate`` without warmup), so the docs are counted
when the value of step 1 is drawn, after the first update of ``spacy train``,
and the count is cached. ``spacy debug config`` and ``spacy.load`` never read
the corpus.
"""

import math
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

from spacy.tokens import DocBin
from spacy.training.corpus import walk_corpus
from thinc.api import registry
from wasabi import msg

__all__ = [
    "WarmupLinearEpochs",
    "count_corpus_docs",
    "plan_warmup_linear",
    "warmup_linear_epochs",
    "warmup_linear_rate",
]

NAME = "spacy-spert.warmup_linear_epochs.v1"


@registry.schedules(NAME)
def warmup_linear_epochs(
    initial_rate: float,
    train_path: Optional[Union[str, Path]],
    batch_size: int,
    max_epochs: int,
    warmup_fraction: float = 0.1,
    limit: int = 0,
) -> "WarmupLinearEpochs":
    """SpERT's schedule: linear warmup over the first ``warmup_fraction`` of all
    updates, then linear decay to 0 at the end of epoch ``max_epochs``.

    initial_rate (float): The peak learning rate, reached at the end of the
        warmup (5e-5 in SpERT).
    train_path (Optional[Union[str, Path]]): The training corpus, a .spacy file
        or a folder of them; normally ``${paths.train}``. Read when training
        starts, not when the config is loaded.
    batch_size (int): Docs per update; normally ``${training.batcher.size}`` of
        a ``spacy.batch_by_sequence.v1`` batcher without ``get_length``.
    max_epochs (int): The number of epochs, > 0; normally ``${training.max_epochs}``.
    warmup_fraction (float): The share of all updates spent warming up, from 0
        to 1 (0.1 in SpERT).
    limit (int): The corpus reader's ``limit`` (0: all docs); normally
        ``${corpora.train.limit}``.
    RETURNS (WarmupLinearEpochs): An iterator of learning rates, one per update.
    """
    return WarmupLinearEpochs(
        initial_rate,
        train_path=train_path,
        batch_size=batch_size,
        max_epochs=max_epochs,
        warmup_fraction=warmup_fraction,
        limit=limit,
    )


def warmup_linear_rate(initial_rate: float, warmup_steps: int, total_steps: int, step: int) -> float:
    """The learning rate of thinc's ``warmup_linear.v1`` at ``step`` (written
    with the same operations, so the result is the same float).

    initial_rate (float): The peak learning rate.
    warmup_steps (int): Steps of linear warmup from 0.
    total_steps (int): The step at which the rate reaches 0.
    step (int): The step, from 0.
    RETURNS (float): The learning rate.
    """
    if step < warmup_steps:
        factor = step / max(1, warmup_steps)
    else:
        factor = max(0.0, (total_steps - step) / max(1.0, total_steps - warmup_steps))
    return factor * initial_rate


def steps_per_epoch(n_docs: int, batch_size: int) -> int:
    """RETURNS (int): The updates of one epoch over ``n_docs`` docs in batches
    of ``batch_size`` (the last batch may be smaller): ceil(n_docs / batch_size)."""
    return math.ceil(n_docs / batch_size)


def plan_warmup_linear(n_docs: int, batch_size: int, max_epochs: int, warmup_fraction: float = 0.1) -> Tuple[int, int]:
    """The step counts of SpERT's schedule for a training set.

    n_docs (int): The number of training docs per epoch.
    batch_size (int): Docs per update.
    max_epochs (int): The number of epochs.
    warmup_fraction (float): The share of all updates spent warming up.
    RETURNS (Tuple[int, int]): ``(warmup_steps, total_steps)``: total =
        max_epochs x ceil(n_docs / batch_size), warmup = round(warmup_fraction
        x total), at least 1 when warmup_fraction > 0 (so that step 0 has rate
        0 whatever the corpus; this only differs from plain rounding when the
        whole training run is shorter than 1 / warmup_fraction / 2 updates).
    """
    total = max_epochs * steps_per_epoch(n_docs, batch_size)
    warmup = round(warmup_fraction * total)
    if warmup_fraction > 0:
        warmup = max(1, warmup)
    return warmup, total


def count_corpus_docs(path: Union[str, Path], limit: int = 0) -> int:
    """The number of docs ``spacy.Corpus.v1`` reads from a .spacy file or a
    folder of them: the non-empty docs, with its ``limit``. (Without
    ``gold_preproc`` and ``max_length``, each doc is one example.)

    path (Union[str, Path]): The .spacy file or folder.
    limit (int): The reader's ``limit``; 0 for all docs.
    RETURNS (int): The number of docs.
    """
    n = 0
    for loc in walk_corpus(path, ".spacy"):
        # As spacy.training.Corpus.read_docbin: the limit ends each file.
        for tokens in DocBin().from_disk(loc).tokens:
            if len(tokens):
                n += 1
                if limit >= 1 and n >= limit:
                    break
    return n


class WarmupLinearEpochs:
    """An iterator of learning rates, one per update: SpERT's warmup and linear
    decay, with the step counts derived from the training corpus on first need.
    See :func:`warmup_linear_epochs` for the arguments.
    """

    def __init__(
        self,
        initial_rate: float,
        *,
        train_path: Optional[Union[str, Path]],
        batch_size: int,
        max_epochs: int,
        warmup_fraction: float = 0.1,
        limit: int = 0,
    ) -> None:
        # Checked now (no corpus needed), so that `spacy debug config` reports them.
        _check(
            isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0,
            "batch_size",
            batch_size,
            "a positive number of docs per update (training.batcher.size of spacy.batch_by_sequence.v1)",
        )
        _check(
            isinstance(max_epochs, int) and max_epochs > 0,
            "max_epochs",
            max_epochs,
            "a positive number of epochs (training.max_epochs); without an epoch limit, "
            "use warmup_linear.v1 with literal step counts",
        )
        _check(0.0 <= warmup_fraction <= 1.0, "warmup_fraction", warmup_fraction, "a share from 0 to 1")
        _check(isinstance(limit, int) and limit >= 0, "limit", limit, "0 (all docs) or a number of docs")
        self.initial_rate = initial_rate
        self.train_path = train_path
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.warmup_fraction = warmup_fraction
        self.limit = limit
        self.step = 0
        self.n_docs: Optional[int] = None
        self._steps: Optional[Tuple[int, int]] = None

    @property
    def steps(self) -> Tuple[int, int]:
        """The step counts, derived from the corpus on first use (then cached).

        RETURNS (Tuple[int, int]): ``(warmup_steps, total_steps)``.
        """
        if self._steps is None:
            self.n_docs = self._count()
            self._steps = plan_warmup_linear(self.n_docs, self.batch_size, self.max_epochs, self.warmup_fraction)
            warmup, total = self._steps
            msg.info(
                f"{NAME}: {self.n_docs} training docs in {self.train_path}, {self.batch_size} per "
                f"update -> {total // self.max_epochs} steps per epoch x {self.max_epochs} epochs = "
                f"{total} steps, warmup {warmup}"
            )
        return self._steps

    def rate(self, step: int) -> float:
        """The learning rate at a step; reads the corpus unless step is 0.

        step (int): The step, from 0.
        RETURNS (float): The learning rate.
        """
        if step == 0:
            # With warmup (at least one step) the rate starts at 0, without it at
            # initial_rate: what warmup_linear_rate gives for any corpus.
            return 0.0 * self.initial_rate if self.warmup_fraction > 0 else 1.0 * self.initial_rate
        warmup, total = self.steps
        return warmup_linear_rate(self.initial_rate, warmup, total, step)

    def __iter__(self) -> Iterator[float]:
        return self

    def __next__(self) -> float:
        value = self.rate(self.step)
        self.step += 1
        return value

    def _count(self) -> int:
        where = "training.optimizer.learn_rate.train_path (normally ${paths.train})"
        if self.train_path is None or str(self.train_path) == "":
            raise ValueError(
                f"{NAME}: no training corpus: {where} is not set. Pass e.g. "
                "--paths.train corpus/train.spacy to spacy train."
            )
        path = Path(self.train_path)
        if not path.exists():
            raise FileNotFoundError(
                f"{NAME}: the training corpus '{path}' ({where}) does not exist; the schedule "
                "counts its docs to derive the warmup and total steps. Convert the data first "
                "or pass --paths.train with an existing .spacy file or folder."
            )
        n_docs = count_corpus_docs(path, self.limit)
        if n_docs == 0:
            raise ValueError(
                f"{NAME}: the training corpus '{path}' ({where}) has no non-empty docs "
                "in .spacy files, so the schedule has no steps."
            )
        return n_docs


def _check(ok: bool, field: str, value, expected: str) -> None:
    if not ok:
        raise ValueError(f"{NAME}: training.optimizer.learn_rate.{field} = {value!r}; expected {expected}.")
