"""spacy-spert.AdamW.v1 against torch.optim.AdamW, and its no-decay rule."""
import numpy
import pytest
import torch
from spacy.util import registry

from spacy_spert.training.optimizers import create_adamw


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


def reference_spert(params, steps, lr, weight_decay, clip):
    """SpERT's reference update: torch.nn.utils.clip_grad_norm_ over all
    parameters, then transformers' AdamW with correct_bias=False (the Adam step,
    then decoupled decay lr * weight_decay), written out by hand."""
    params = [p.copy().astype("float64") for p in params]
    m = [numpy.zeros_like(p) for p in params]
    v = [numpy.zeros_like(p) for p in params]
    for grads in steps:
        grads = [g.astype("float64") for g in grads]
        total = numpy.sqrt(sum(float((g**2).sum()) for g in grads))
        coefficient = clip / (total + 1e-6)
        if coefficient < 1:
            grads = [g * coefficient for g in grads]
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            params[i] = params[i] - lr * m[i] / (numpy.sqrt(v[i]) + 1e-6)
            params[i] = params[i] - lr * weight_decay * params[i]
    return params


def test_global_clipping_without_bias_correction_matches_spert_reference():
    rng = numpy.random.default_rng(2)
    params = [rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(5,)).astype("float32")]
    # step 1 and 3 have a global norm > 1 (clipped), step 2 < 1 (not clipped)
    steps = [[rng.normal(size=p.shape).astype("float32") * s for p in params] for s in (3.0, 0.05, 1.5)]
    optimizer = create_adamw(0.01, weight_decay=0.01, grad_clip=1.0, grad_clip_scope="global", correct_bias=False)
    ours = [p.copy() for p in params]
    for grads in steps:
        for i, g in enumerate(grads):
            gradient = g.copy()
            ours[i], gradient = optimizer((i, f"layer{i}.weight"), ours[i], gradient)
            assert not gradient.any()  # zeroed at once, as thinc expects
        optimizer.step_schedules()
    expected = reference_spert(params, steps, 0.01, 0.01, 1.0)
    for got, want in zip(ours, expected):
        # the decay comes before the Adam step in torch's AdamW, after it in the
        # reference: they differ by lr * weight_decay * |step| <= 1e-4 * 0.032
        # per step (with bias correction the first step alone would be 3.2x off)
        numpy.testing.assert_allclose(got, want, rtol=0, atol=3e-5)
    # the held updates were applied: the weights moved by about lr per step
    assert numpy.abs(ours[0] - params[0]).max() > 0.01


def test_global_clipping_holds_updates_until_the_step_ends():
    optimizer = create_adamw(0.1, weight_decay=0.0, grad_clip=1.0, grad_clip_scope="global")
    weights = numpy.ones((3,), dtype="float32")
    got, _ = optimizer((1, "w"), weights, numpy.array([30.0, 40.0, 0.0], dtype="float32"))
    assert got is weights and (weights == 1).all()  # nothing applied yet
    optimizer.step_schedules()
    # clipped to norm 1 first, so the first Adam step is lr * sign(g) where g != 0
    numpy.testing.assert_allclose(weights, [0.9, 0.9, 1.0], rtol=1e-5)
    # a key seen again before step_schedules applies the held step first
    optimizer((1, "w"), weights, numpy.array([1.0, 0.0, 0.0], dtype="float32"))
    optimizer((1, "w"), weights, numpy.array([1.0, 0.0, 0.0], dtype="float32"))
    assert optimizer.nr_update[(1, "w")] == 2
    optimizer.step_schedules()
    assert optimizer.nr_update[(1, "w")] == 3


def test_global_clipping_through_a_pytorch_wrapper_equals_clip_grad_norm():
    """The path spacy train takes: thinc's PyTorchShim calls the optimizer once
    per array, then step_schedules applies the step with the global norm."""
    from thinc.api import PyTorchWrapper

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    twin.load_state_dict(module.state_dict())
    model = PyTorchWrapper(module)
    optimizer = create_adamw(0.05, weight_decay=0.0, grad_clip=0.5, grad_clip_scope="global")
    reference_opt = torch.optim.AdamW(twin.parameters(), lr=0.05, eps=1e-6, weight_decay=0.0)
    x = numpy.random.default_rng(3).normal(size=(8, 3)).astype("float32")
    for _ in range(3):
        y, backprop = model.begin_update(x)
        backprop(numpy.ones_like(y) * 10)  # d(sum(10 y)): a large gradient, clipped
        model.finish_update(optimizer)
        optimizer.step_schedules()
        reference_opt.zero_grad()
        (twin(torch.tensor(x)).sum() * 10).backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
        reference_opt.step()
    for (name, ours), theirs in zip(module.named_parameters(), twin.parameters()):
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-6, msg=name)


def test_unknown_clip_scope_is_an_error():
    with pytest.raises(ValueError, match="grad_clip_scope"):
        create_adamw(0.1, grad_clip_scope="layer")


def test_overfit_with_the_reference_update_rule(tiny_bert):
    """spacy-spert.AdamW.v1 as SpERT's reference runs it (global clipping, no
    bias correction) trains the pipeline: every training sentence is predicted
    exactly."""
    from spacy.util import fix_random_seed

    from conftest import TRAIN_DATA, make_nlp, overfit
    from test_spert import gold, predictions

    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    optimizer = create_adamw(1e-3, weight_decay=0.01, grad_clip=1.0, grad_clip_scope="global", correct_bias=False)
    overfit(nlp, optimizer=optimizer)
    assert not optimizer._held
    for words, entities, relations in TRAIN_DATA:
        doc = nlp(" ".join(words))
        assert (sorted(predictions(doc)[0]), predictions(doc)[1]) == gold(words, entities, relations)
