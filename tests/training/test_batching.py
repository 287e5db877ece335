"""Training within a memory budget: spaCy's ``spacy.batch_by_words.v1`` with
tolerance 0, as docs/training-and-configs.md ("Memory") and the comment in
configs/spert.cfg give it, batches by tokens: no batch holds more tokens
than the budget but a doc longer than the budget, alone; every doc is kept
once; the batches depend only on the order of the examples."""

import random
from itertools import pairwise

import pytest
import spacy
from conftest import make_doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Config

# the [training.batcher] block that the docs give
BATCHER = """
[training]

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
size = 100
tolerance = 0.0
discard_oversize = false
get_length = null
"""


def examples(lengths):
    nlp = spacy.blank("en")
    out = []
    for i, n in enumerate(lengths):
        words = [f"w{i}"] * n
        out.append(Example(nlp.make_doc(" ".join(words)), make_doc(nlp.vocab, words, [], [])))
    return out


def batcher(size: int = 100):
    config = Config().from_str(BATCHER)
    config["training"]["batcher"]["size"] = size
    return registry.resolve(config)["training"]["batcher"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batches_by_tokens_stay_within_the_budget(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 5, 20, 40, 99, 100, 101, 350]) for _ in range(200)]
    egs = examples(lengths)
    batches = list(batcher(100)(egs))
    for batch in batches:
        tokens = sum(len(eg) for eg in batch)
        assert tokens <= 100 or (len(batch) == 1 and tokens > 100)
    assert sum(len(b) == 1 and len(b[0]) > 100 for b in batches) == sum(n > 100 for n in lengths)
    # every example once; the order is the input's but for the oversize docs,
    # which come alone as soon as they are reached
    flat = [id(eg) for batch in batches for eg in batch]
    assert sorted(flat) == sorted(map(id, egs))
    fitting = [id(eg) for eg in egs if len(eg) <= 100]
    assert [i for i in flat if i in set(fitting)] == fitting
    # full batches: a batch ends only when the next doc would not fit
    for batch, nxt in pairwise(batches):
        if len(nxt[0]) <= 100 and not (len(batch) == 1 and len(batch[0]) > 100):
            assert sum(map(len, batch)) + len(nxt[0]) > 100
    assert [[id(eg) for eg in b] for b in batcher(100)(egs)] == [[id(eg) for eg in b] for b in batches]


def test_research_memory_batches_are_the_docs_batcher():
    """``research memory`` trains on the batches the documented batcher
    makes of the examples shuffled with the seed: the same for a seed."""
    from research.memory import train_batches

    egs = examples([3, 50, 60, 120, 7, 7, 90, 10])
    a = train_batches(egs, 100, seed=0)
    assert [[id(e) for e in b] for b in a] == [[id(e) for e in b] for b in train_batches(egs, 100, seed=0)]
    assert all(sum(map(len, b)) <= 100 or len(b) == 1 for b in a)
    assert sorted(id(e) for b in a for e in b) == sorted(map(id, egs))
