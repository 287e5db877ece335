"""GPU: training and inference on a CUDA device (skipped without one).

Run on a GPU machine with ``python -m pytest tests -m gpu``.
"""

import pytest
import torch
from conftest import TRAIN_DATA, TRAIN_TEXTS, head_of, long_texts, make_nlp, overfit, scored_predictions, train_examples
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
    texts = TRAIN_TEXTS * 4
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


def test_gpu_inference_decides_as_the_cpu(tiny_bert, tmp_path, monkeypatch):
    """The GPU's inference schedule (entities of every block, one copy of
    their logits, then relations) predicts what the same pipeline predicts on
    the CPU, on sentences and on a long doc of several blocks."""
    import spacy

    from spacy_spert.models import tuning

    monkeypatch.setattr(tuning, "INFERENCE_BLOCK_TOKENS", 200)
    spacy.require_gpu(0)
    try:
        fix_random_seed(0)
        nlp = make_nlp(tiny_bert, window="sentence")
        overfit(nlp, n_steps=60, learn_rate=3e-3)
        nlp.to_disk(tmp_path / "model")
        gpu = scored_predictions(nlp, long_texts(), batch_size=8)
    finally:
        set_current_ops(NumpyOps())
    cpu = scored_predictions(spacy.load(tmp_path / "model"), long_texts(), batch_size=8)
    assert sum(len(ents) for ents, _, _, _ in cpu) > 20
    for (e_g, s_g, r_g, rs_g), (e_c, s_c, r_c, rs_c) in zip(gpu, cpu):
        assert e_g == e_c and r_g == r_c
        assert s_g == pytest.approx(s_c, abs=1e-4) and rs_g == pytest.approx(rs_c, abs=1e-4)


def test_gpu_inference_synchronizes_twice_per_batch(tiny_bert, on_gpu, monkeypatch):
    """torch's sync debug mode counts the operations that make the host wait
    for the GPU in the spert component's inference: the same number (the
    copies of the entity and of the relation logits) for a batch of one
    block and a batch of several."""
    import warnings

    from spacy_spert.models import tuning

    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, window="sentence")
    overfit(nlp, n_steps=20)
    spert = nlp.get_pipe("spert")
    with nlp.select_pipes(enable=["transformer"]):
        docs = list(nlp.pipe(long_texts()[-1:]))
    counts = {}
    for block_tokens in (10**6, 300, 200):  # blocks of all, 2, 1 pairing groups (128 tokens)
        monkeypatch.setattr(tuning, "INFERENCE_BLOCK_TOKENS", block_tokens)
        spert.predict(docs)  # warm-up (pinned memory, caches)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                spert.predict(docs)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        counts[block_tokens] = sum("synchroniz" in str(w.message) for w in caught)
    assert counts[10**6] == counts[300] == counts[200] <= 3, counts


def test_gpu_mixed_precision_training_and_inference(tiny_bert, on_gpu):
    """float16 on the GPU for the encoder (spacy-transformers' switch) and
    the head (ours), with both grad scalers: the model overfits, and its
    decisions in float16 equal its decisions in float32."""
    fix_random_seed(0)
    scaler = {"init_scale": 1024.0}
    spert_config = {"model": {"mixed_precision": True, "grad_scaler_config": scaler}}
    nlp = make_nlp(tiny_bert, spert_config, window="sentence", mixed_precision=True, grad_scaler_config=scaler)
    overfit(nlp)
    shim = nlp.get_pipe("spert").model.get_ref("head").shims[0]
    assert shim._grad_scaler._enabled and torch.isfinite(shim._grad_scaler._scale).all()
    scores = nlp.evaluate(train_examples(nlp))
    assert scores["spert_ent_f"] >= 0.9 and scores["spert_rel_f"] >= 0.9
    mixed = scored_predictions(nlp, TRAIN_TEXTS, batch_size=8)
    head_of(nlp).mixed_precision = False
    full = scored_predictions(nlp, TRAIN_TEXTS, batch_size=8)
    for (e_m, s_m, r_m, _), (e_f, s_f, r_f, _) in zip(mixed, full):
        assert e_m == e_f and r_m == r_f
        assert s_m == pytest.approx(s_f, abs=1e-2)
