"""spacy-spert.warmup_linear_epochs.v1: SpERT's learning-rate schedule with the
step counts derived from the training corpus (spacy_spert/training/schedules.py)."""

import itertools
import math
from pathlib import Path

import pytest
import spacy
from conftest import benchmark_file
from spacy import util
from spacy.schemas import ConfigSchemaTraining
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus
from spacy.util import registry
from thinc.api import Adam
from thinc.schedules import warmup_linear

from spacy_spert.training.schedules import (
    NAME,
    WarmupLinearEpochs,
    count_corpus_docs,
    plan_warmup_linear,
    warmup_linear_epochs,
    warmup_linear_rate,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write_docbin(path: Path, lengths) -> Path:
    """A .spacy file with one doc of each length (0: an empty doc)."""
    vocab = spacy.blank("en").vocab
    DocBin(docs=[Doc(vocab, words=["w"] * n) for n in lengths]).to_disk(path)
    return path


def _schedule(path, **kwargs) -> WarmupLinearEpochs:
    args = {"initial_rate": 0.8, "train_path": str(path), "batch_size": 2, "max_epochs": 4, **kwargs}
    return warmup_linear_epochs(**args)


def _take(schedule, n: int):
    return list(itertools.islice(schedule, n))


# Step counts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_docs,batch_size,epochs,expected",
    [
        (922, 2, 20, (922, 9220)),  # CoNLL04 train
        (1153, 2, 20, (1154, 11540)),  # CoNLL04 train+dev: ceil(1153 / 2) = 577
        (1861, 2, 20, (1862, 18620)),  # SciERC train
        (2136, 2, 20, (2136, 21360)),  # SciERC train+dev
        (3845, 2, 20, (3846, 38460)),  # ADE folds 0-8
        (3843, 2, 20, (3844, 38440)),  # ADE fold 9
        (500, 8, 10, (63, 630)),  # the demo: ceil(500 / 8) = 63
        (10, 2, 4, (2, 20)),
        (7, 3, 1, (0, 3)),  # warmup_fraction 0 below
        (1, 2, 2, (1, 2)),  # round(0.2) = 0 -> at least one warmup step
    ],
)
def test_plan_warmup_linear(n_docs, batch_size, epochs, expected):
    fraction = 0.0 if expected[0] == 0 else 0.1
    assert plan_warmup_linear(n_docs, batch_size, epochs, fraction) == expected


def test_count_corpus_docs_skips_empty_docs_and_honours_limit(tmp_path):
    path = _write_docbin(tmp_path / "train.spacy", [3, 0, 4, 5, 0, 2, 1, 6])
    assert count_corpus_docs(path) == 6
    assert count_corpus_docs(path, limit=4) == 4
    assert count_corpus_docs(path, limit=10) == 6


@pytest.mark.parametrize("limit", [0, 1, 3, 5, 20])
def test_count_corpus_docs_equals_spacy_corpus(tmp_path, limit):
    """The count is what spacy.Corpus.v1 yields, also for a folder of files
    (where spaCy's limit applies per file after the first one)."""
    folder = tmp_path / "train"
    (folder / "sub").mkdir(parents=True)
    _write_docbin(folder / "a.spacy", [3, 0, 4, 5])
    _write_docbin(folder / "sub" / "b.spacy", [2, 2, 0, 1, 7])
    _write_docbin(folder / "c.spacy", [1])
    nlp = spacy.blank("en")
    expected = sum(1 for _ in Corpus(folder, limit=limit)(nlp))
    assert count_corpus_docs(folder, limit=limit) == expected


# Values ------------------------------------------------------------------------------


def test_rates_hand_computed(tmp_path):
    # 10 non-empty docs, 2 per batch: 5 steps per epoch x 4 epochs = 20 steps,
    # warmup round(0.1 x 20) = 2; rate 0.8 at the end of the warmup.
    path = _write_docbin(tmp_path / "train.spacy", [2] * 10 + [0, 0])
    rates = _take(_schedule(path), 25)
    assert rates[0] == 0.0
    assert rates[1] == pytest.approx(0.4)  # 1/2 of the warmup
    assert rates[2] == pytest.approx(0.8)  # warmup end: the peak
    assert rates[11] == pytest.approx(0.4)  # (20 - 11) / 18 x 0.8, the middle of the decay
    assert rates[19] == pytest.approx(0.8 / 18)  # last update
    assert rates[20:] == [0.0] * 5  # after the last epoch
    assert all(a >= b for a, b in itertools.pairwise(rates[2:]))


def test_rates_without_warmup(tmp_path):
    path = _write_docbin(tmp_path / "train.spacy", [2] * 7)
    rates = _take(_schedule(path, batch_size=3, max_epochs=1, warmup_fraction=0.0), 4)
    assert rates == pytest.approx([0.8, 0.8 * 2 / 3, 0.8 / 3, 0.0])


@pytest.mark.parametrize(
    "n_docs,batch_size,epochs,limit", [(10, 2, 4, 0), (23, 4, 3, 0), (57, 2, 5, 0), (57, 2, 5, 31)]
)
def test_rates_equal_warmup_linear_v1(tmp_path, n_docs, batch_size, epochs, limit):
    """Every value is the float thinc's warmup_linear.v1 gives for the step
    counts scripts/train.py used to compute and pass as literal numbers."""
    path = _write_docbin(tmp_path / "train.spacy", [3] * n_docs + [0])
    docs = min(n_docs, limit) if limit else n_docs
    total = epochs * math.ceil(docs / batch_size)
    warmup = round(0.1 * total)
    schedule = _schedule(path, initial_rate=5e-5, batch_size=batch_size, max_epochs=epochs, limit=limit)
    n = total + 5
    assert _take(schedule, n) == _take(warmup_linear(5e-5, warmup, total), n)
    assert schedule.steps == (warmup, total) and schedule.n_docs == docs


def test_warmup_linear_rate_is_thincs_formula():
    expected = _take(warmup_linear(3e-4, 63, 630), 640)
    assert [warmup_linear_rate(3e-4, 63, 630, step) for step in range(640)] == expected


# Lazy corpus -------------------------------------------------------------------------


def test_optimizer_creation_needs_no_corpus(tmp_path):
    """thinc's Optimizer draws the first rate when it is created (also in
    `spacy debug config`): that must not read the corpus."""
    missing = tmp_path / "nowhere" / "train.spacy"
    block = {"@schedules": NAME, "initial_rate": 5e-5, "train_path": str(missing), "batch_size": 2, "max_epochs": 20}
    optimizer = registry.resolve({"o": {"@optimizers": "spacy-spert.AdamW.v1", "learn_rate": block}})["o"]
    assert optimizer.learn_rate == 0.0
    schedule = optimizer.schedules["learn_rate"]
    assert isinstance(schedule, WarmupLinearEpochs) and schedule.n_docs is None
    assert Adam(_schedule(missing)).learn_rate == 0.0  # thinc's own Adam takes it as well
    # the first step that depends on the corpus: a clear error naming the path
    with pytest.raises(FileNotFoundError, match=r"nowhere.*train\.spacy.*train_path"):
        optimizer.step_schedules()


def test_config_resolves_without_corpus(tmp_path):
    """What `spacy debug config` does with configs/spert.cfg: resolve [training]."""
    missing = tmp_path / "nowhere" / "train.spacy"
    config = util.load_config(
        REPO_ROOT / "configs" / "spert.cfg", overrides={"paths.train": str(missing)}, interpolate=True
    )
    optimizer = registry.resolve(config["training"], schema=ConfigSchemaTraining)["optimizer"]
    schedule = optimizer.schedules["learn_rate"]
    assert (schedule.train_path, schedule.batch_size, schedule.max_epochs, schedule.limit) == (str(missing), 2, 20, 0)
    assert optimizer.learn_rate == 0.0 and schedule.n_docs is None


def test_docs_are_counted_once(tmp_path, monkeypatch):
    import spacy_spert.training.schedules as schedules

    path = _write_docbin(tmp_path / "train.spacy", [2] * 10)
    calls = []
    real = schedules.count_corpus_docs
    monkeypatch.setattr(schedules, "count_corpus_docs", lambda *a, **k: calls.append(a) or real(*a, **k))
    schedule = _schedule(path)
    next(schedule)
    assert calls == []
    _take(schedule, 30)
    assert len(calls) == 1 and schedule.steps == (2, 20)


def test_prints_the_plan(tmp_path, capsys):
    path = _write_docbin(tmp_path / "train.spacy", [2] * 10)
    _take(_schedule(path), 3)
    out = " ".join(capsys.readouterr().out.split())  # wasabi wraps long lines
    assert f"10 training docs in {path}" in out
    assert "5 steps per epoch x 4 epochs = 20 steps, warmup 2" in out


# Errors ------------------------------------------------------------------------------


def test_error_missing_corpus(tmp_path):
    schedule = _schedule(tmp_path / "missing.spacy")
    assert next(schedule) == 0.0
    with pytest.raises(FileNotFoundError) as err:
        next(schedule)
    message = str(err.value)
    assert NAME in message and str(tmp_path / "missing.spacy") in message and "paths.train" in message


def test_error_corpus_without_docs(tmp_path):
    path = _write_docbin(tmp_path / "empty.spacy", [0, 0])
    schedule = _schedule(path)
    next(schedule)
    with pytest.raises(ValueError, match=r"'.*empty\.spacy'.*no non-empty docs"):
        next(schedule)


def test_error_train_path_not_set():
    schedule = warmup_linear_epochs(5e-5, train_path=None, batch_size=2, max_epochs=20)
    next(schedule)
    with pytest.raises(ValueError, match=r"train_path.*not set.*--paths.train"):
        next(schedule)


@pytest.mark.parametrize(
    "field,value",
    [("max_epochs", 0), ("max_epochs", -1), ("batch_size", 0), ("warmup_fraction", 1.5), ("limit", -1)],
)
def test_errors_in_arguments_are_raised_when_the_config_is_resolved(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"training\.optimizer\.learn_rate\.{field} = {value}"):
        _schedule(tmp_path / "missing.spacy", **{field: value})


# Benchmark data (skipped without it: see benchmark_datasets in conftest.py) ------------------


@pytest.fixture(scope="module")
def conll04_corpora(tmp_path_factory):
    folder = benchmark_file("conll04", "conll04_train.json").parent
    from spacy_spert.io.spert_json import convert_file

    out = tmp_path_factory.mktemp("conll04")
    for split in ("train", "train_dev"):
        convert_file(folder / f"conll04_{split}.json", out / f"{split}.spacy", types_path=folder / "conll04_types.json")
    return out


@pytest.mark.parametrize("split,n_docs,warmup,total", [("train", 922, 922, 9220), ("train_dev", 1153, 1154, 11540)])
def test_conll04_schedule_equals_the_literal_one(conll04_corpora, split, n_docs, warmup, total):
    """configs/spert.cfg with --paths.train on CoNLL04 gives the step counts the
    old configs hard-coded (and scripts/train.py computed), and the optimizer's
    learning rate at every step is that of warmup_linear.v1 with them."""
    config = util.load_config(
        REPO_ROOT / "configs" / "spert.cfg",
        overrides={"paths.train": str(conll04_corpora / f"{split}.spacy")},
        interpolate=True,
    )
    optimizer = registry.resolve(config["training"], schema=ConfigSchemaTraining)["optimizer"]
    rates = [optimizer.learn_rate]
    for _ in range(total + 9):
        optimizer.step_schedules()
        rates.append(optimizer.learn_rate)
    schedule = optimizer.schedules["learn_rate"]
    assert schedule.n_docs == n_docs
    assert schedule.steps == (warmup, total)
    expected = _take(warmup_linear(5e-5, warmup, total), total + 10)
    assert rates == expected
    assert max(rates) == rates[warmup] == 5e-5 and rates[total:] == [0.0] * 10
