"""spacy-spert.AdamW.v1 against torch.optim.AdamW, and its no-decay rule."""
import numpy
import pytest
import torch
from spacy.util import registry

from spacy_spert.optimizers import create_adamw


def reference(weights, grads, lr, weight_decay, clip=None):
    param = torch.nn.Parameter(torch.tensor(weights))
    opt = torch.optim.AdamW([param], lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=weight_decay)
    for g in grads:
        g = torch.tensor(g)
        if clip is not None and float(g.norm()) > clip:
            g = g * (clip / float(g.norm()))
        param.grad = g
        opt.step()
    return param.detach().numpy()


@pytest.mark.parametrize("name,decay", [("encoder.layer.0.attention.self.query.weight", 0.01), ("encoder.layer.0.output.LayerNorm.weight", 0.0), ("pooler.dense.bias", 0.0)])
def test_matches_torch_adamw_and_skips_decay_on_bias_and_layernorm(name, decay):
    rng = numpy.random.default_rng(0)
    weights = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") * 0.1 for _ in range(3)]
    optimizer = registry.resolve({"o": {"@optimizers": "spacy-spert.AdamW.v1", "learn_rate": 0.1, "weight_decay": 0.01, "grad_clip": 0.0}})["o"]
    ours = weights.copy()
    for g in grads:
        gradient = g.copy()
        ours, gradient = optimizer((7, name), ours, gradient)
        assert not gradient.any()  # the gradient is zeroed
    numpy.testing.assert_allclose(ours, reference(weights, grads, 0.1, decay), rtol=1e-5, atol=1e-6)


def test_gradient_clipping_per_array_and_schedule():
    from thinc.api import warmup_linear

    optimizer = create_adamw(warmup_linear(initial_rate=0.1, warmup_steps=2, total_steps=10), weight_decay=0.0, grad_clip=1.0)
    assert optimizer.learn_rate == 0.0
    optimizer.step_schedules()
    assert optimizer.learn_rate == pytest.approx(0.05)
    weights = numpy.ones((3,), dtype="float32")
    grad = numpy.array([30.0, 40.0, 0.0], dtype="float32")  # norm 50 -> clipped to 1
    expected = reference(weights, [grad.copy()], 0.05, 0.0, clip=1.0)
    got, _ = optimizer((1, "w"), weights.copy(), grad.copy())
    numpy.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "name,scale",
    [("entity_classifier.weight", 2.0), ("entity_identifier.weight", 10.0), ("encoder.layer.0.attention.self.query.weight", 1.0)],
)
def test_learn_rate_scales_by_longest_name_prefix(name, scale):
    rng = numpy.random.default_rng(1)
    weights = rng.normal(size=(5,)).astype("float32")
    grads = [rng.normal(size=(5,)).astype("float32") for _ in range(2)]
    optimizer = registry.resolve(
        {
            "o": {
                "@optimizers": "spacy-spert.AdamW.v1",
                "learn_rate": 0.01,
                "weight_decay": 0.0,
                "grad_clip": 0.0,
                "learn_rate_scales": {"entity_": 10, "entity_classifier": 2},
            }
        }
    )["o"]
    ours = weights.copy()
    for g in grads:
        ours, _ = optimizer((3, name), ours, g.copy())
    numpy.testing.assert_allclose(ours, reference(weights, grads, 0.01 * scale, 0.0), rtol=1e-5, atol=1e-6)
