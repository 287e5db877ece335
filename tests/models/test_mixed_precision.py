"""The head's mixed precision (``mixed_precision`` of SpERT.v1 and
SpERTMT.v1), on the CPU: bfloat16 autocast (float16 on CUDA is in
tests/test_gpu.py). The logits stay float32; decisions equal float32's."""

import numpy
import pytest
import spacy
import torch
from conftest import (
    TRAIN_TEXTS,
    head_of,
    make_nlp,
    overfit,
    scored_predictions,
    tiny_head,
    train_examples,
    train_step,
)
from spacy.util import fix_random_seed, make_tempdir

from spacy_spert.models.architectures import head_grad_scaler
from spacy_spert.models.objectives import SpERTObjective
from spacy_spert.models.suggesters import enumerate_spans

MIXED = {"model": {"mixed_precision": True}}


def head_pair(mt: bool):
    """Two heads with the same weights (no dropout), in float32 and in mixed precision."""
    full = tiny_head(mt=mt, dropout=0.0)
    mixed = tiny_head(seed=None, mt=mt, dropout=0.0, mixed_precision=True)
    mixed.load_state_dict(full.state_dict())
    return full, mixed


@pytest.mark.parametrize("mt", [False, True])
def test_mixed_precision_training_computation_runs_in_bfloat16_with_float32_logits(mt):
    """The training forward in autocast: float32 logits close to float32's
    (bfloat16 keeps 8 bits of mantissa), not equal to them (the switch does
    something), and float32 gradients for the weights and the input."""
    full, mixed = head_pair(mt)
    rng = numpy.random.default_rng(0)
    n_tokens = 10
    hidden = torch.tensor(rng.normal(size=(12, 16)), dtype=torch.float32)
    starts, ends = enumerate_spans(n_tokens, 3)
    inputs = dict(
        align_rows=torch.arange(1, 11),
        align_tokens=torch.arange(10),
        token_cls_rows=torch.zeros(10, dtype=torch.int64),
        n_tokens=n_tokens,
        max_range=n_tokens,
        span_starts=torch.tensor(starts),
        span_ends=torch.tensor(ends),
        pair_heads=torch.tensor([0, 3, 5]),
        pair_tails=torch.tensor([4, 0, 9]),
    )
    outputs = {}
    for name, head in (("full", full), ("mixed", mixed)):
        x = hidden.clone().requires_grad_(True)
        ent, rel = head(x, **inputs)
        (ent.sum() + rel.sum()).backward()
        outputs[name] = (ent, rel, x.grad, head.entity_classifier.classes.weight.grad)
    for a, b in zip(outputs["full"], outputs["mixed"]):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=3e-2, atol=3e-2)
    assert not torch.equal(outputs["full"][0], outputs["mixed"][0])


def test_mixed_precision_inference_gives_float32_logits_close_to_float32():
    full, mixed = head_pair(True)
    n_tokens = 12
    hidden = torch.randn(14, 16, generator=torch.Generator().manual_seed(0))
    starts, ends = enumerate_spans(n_tokens, 4)
    inputs = dict(
        align_rows=numpy.arange(1, 13),
        align_tokens=numpy.arange(12),
        cls_rows=numpy.array([0]),
        token_windows=numpy.zeros(12, dtype="int64"),
        n_tokens=n_tokens,
        max_range=n_tokens,
        span_starts=starts,
        span_ends=ends,
        span_groups=numpy.zeros(len(starts), dtype="int64"),
        blocks=[(0, len(starts), 0, n_tokens)],
        objective=SpERTObjective(),
        threshold=0.5,
        given_entities=True,
    )
    with torch.inference_mode():
        a = full.predict(hidden, **inputs)
        b = mixed.predict(hidden, **inputs)
    assert b.entity_logits.dtype == b.relation_logits.dtype == torch.float32
    assert b.entity_scores.dtype == a.entity_scores.dtype
    numpy.testing.assert_array_equal(a.pair_heads, b.pair_heads)
    torch.testing.assert_close(b.entity_logits, a.entity_logits, rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(b.relation_logits, a.relation_logits, rtol=3e-2, atol=3e-2)
    assert not torch.equal(a.relation_logits, b.relation_logits)


def test_trained_pipeline_decides_the_same_in_mixed_precision(small_model_dir):
    """The overfitted pipeline predicts the same entities and relations with
    the head in bfloat16, with scores within 1e-2 of float32's."""
    texts = TRAIN_TEXTS + ["Anna Lee works for Globex in London ."]
    full = scored_predictions(spacy.load(small_model_dir), texts)
    mixed_nlp = spacy.load(small_model_dir, config={"components.spert.model.mixed_precision": True})
    assert head_of(mixed_nlp).mixed_precision and not head_of(spacy.load(small_model_dir)).mixed_precision
    mixed = scored_predictions(mixed_nlp, texts)
    assert sum(len(p[0]) for p in full) >= 8 and sum(len(p[2]) for p in full) >= 5
    for (ents_a, scores_a, rels_a, rel_scores_a), (ents_b, scores_b, rels_b, rel_scores_b) in zip(full, mixed):
        assert ents_a == ents_b and rels_a == rels_b
        numpy.testing.assert_allclose(scores_b, scores_a, atol=1e-2)
        numpy.testing.assert_allclose(rel_scores_b, rel_scores_a, atol=1e-2)


@pytest.mark.parametrize("architecture", ["spacy-spert.SpERT.v1", "spacy-spert.SpERTMT.v1"])
def test_training_with_mixed_precision_learns_and_keeps_the_setting(tiny_bert, architecture):
    """Steps with the switch on run (bfloat16 on the CPU, no scaler) and
    learn; the setting survives saving and loading."""
    fix_random_seed(0)
    listener = {"@layers": "spacy-spert.WordpieceListener.v1", "upstream": "*"}
    config = {"model": {"@architectures": architecture, "tok2vec": listener, "mixed_precision": True}}
    if architecture.endswith("SpERTMT.v1"):
        config["threshold"] = 0.85
    nlp = make_nlp(tiny_bert, spert_config=config)
    examples = overfit(nlp, n_steps=2, learn_rate=3e-3)
    shim = nlp.get_pipe("spert").model.get_ref("head").shims[0]
    assert not shim._grad_scaler._enabled  # the CPU's bfloat16 needs none
    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = 3e-3
    losses = [train_step(nlp, examples, optimizer)["spert"] for _ in range(40)]
    assert all(numpy.isfinite(losses)) and losses[-1] < 0.5 * losses[0]
    assert head_of(nlp).mixed_precision
    with make_tempdir() as path:
        nlp.to_disk(path)
        loaded = spacy.load(path)
        assert head_of(loaded).mixed_precision
        assert loaded.config["components"]["spert"]["model"]["mixed_precision"] is True
        texts = [eg.reference.text for eg in train_examples(nlp)]
        assert scored_predictions(loaded, texts)[0][0] == scored_predictions(nlp, texts)[0][0]


def test_grad_scaler_settings_reach_the_heads_shim(tiny_bert):
    """grad_scaler_config is thinc's PyTorchGradScaler's: on the CPU it is
    off unless asked for (bfloat16 needs no scaling; thinc scales CUDA
    tensors only), and its settings are passed on."""
    assert not head_grad_scaler(True, {})._enabled
    scaler = head_grad_scaler(False, {"enabled": True, "init_scale": 1024.0, "growth_interval": 5})
    assert scaler._enabled and float(scaler._scale) == 1024.0 and scaler._growth_interval == 5
    nlp = make_nlp(
        tiny_bert, spert_config={"model": {"mixed_precision": True, "grad_scaler_config": {"init_scale": 8.0}}}
    )
    nlp.initialize(lambda: train_examples(nlp))
    shim = nlp.get_pipe("spert").model.get_ref("head").shims[0]
    assert float(shim._grad_scaler._scale) == 8.0 and not shim._grad_scaler._enabled


def test_encoder_mixed_precision_switch_resolves_and_predicts_on_the_cpu(tiny_bert):
    """The transformer's own switch (spacy-transformers' ``mixed_precision``
    and ``grad_scaler_config``), as docs/training-and-configs.md gives it,
    with the head's: the pipeline initializes and predicts (on the CPU
    torch's CUDA autocast is off, so only the head runs in bfloat16)."""
    import warnings

    nlp = make_nlp(tiny_bert, MIXED, mixed_precision=True, grad_scaler_config={"enabled": False})
    examples = train_examples(nlp)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*CUDA is not available.*")
        nlp.initialize(lambda: examples)
        doc = nlp(examples[0].reference.text)
    assert doc._.trf_data.model_output.last_hidden_state.dtype == numpy.float32
    assert head_of(nlp).mixed_precision
