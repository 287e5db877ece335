"""GPU: training and inference on a CUDA device (skipped without one).

Run on a GPU machine with ``python -m pytest tests -m gpu``.
"""

import pytest
import torch
from conftest import TRAIN_DATA, head_of, make_nlp, overfit, train_examples
from spacy.util import fix_random_seed
from thinc.api import NumpyOps, get_current_ops, set_current_ops

from spacy_spert.relations import relation_key

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def on_gpu():
    import spacy

    spacy.require_gpu(0)
    yield
    set_current_ops(NumpyOps())


def test_overfit_on_gpu(tiny_bert, on_gpu):
    """Training and inference run on the GPU: the head's weights live there,
    the model overfits to F1 = 1.0, and nlp.pipe in batches gives the same
    output as one doc at a time."""
    assert type(get_current_ops()).__name__ == "CupyOps"
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, window="sentence")
    overfit(nlp)
    head = head_of(nlp)
    assert all(p.is_cuda for p in head.parameters())
    scores = nlp.evaluate(train_examples(nlp))
    assert scores["spert_ent_f"] == 1.0 and scores["spert_rel_f"] == 1.0
    texts = [" ".join(words) for words, _, _ in TRAIN_DATA] * 4
    one = [nlp(text) for text in texts]
    batched = list(nlp.pipe(texts, batch_size=8))
    for a, b in zip(one, batched):
        assert [(s.start, s.end, s.label_) for s in a.spans["sc"]] == [
            (s.start, s.end, s.label_) for s in b.spans["sc"]
        ]
        assert sorted(map(relation_key, a._.relations)) == sorted(map(relation_key, b._.relations))


def test_long_doc_on_gpu(tiny_bert, on_gpu):
    """A 5,000-token doc without sentence boundaries runs on the GPU."""
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, window="sentence")
    overfit(nlp, n_steps=20)
    words = " ".join(" ".join(w for w in words if w not in {".", ","}) for words, _, _ in TRAIN_DATA).split()
    doc = nlp(" ".join((words * (5000 // len(words) + 1))[:5000]))
    assert len(doc) == 5000
    assert all(0 <= s.start < s.end <= 5000 for s in doc.spans["sc"])
