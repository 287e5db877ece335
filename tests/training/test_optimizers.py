"""spacy-spert.AdamW.v1 against torch.optim.AdamW, and its no-decay rule;
against its earlier implementation (one torch.optim.AdamW per array), which
it must match."""

import math

import numpy
import pytest
import torch
from spacy.util import registry
from thinc.api import Optimizer, xp2torch

from spacy_spert.training import optimizers
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


@pytest.mark.parametrize(
    "name,decay",
    [
        ("encoder.layer.0.attention.self.query.weight", 0.01),
        ("encoder.layer.0.output.LayerNorm.weight", 0.0),
        ("pooler.dense.bias", 0.0),
    ],
)
def test_matches_torch_adamw_and_skips_decay_on_bias_and_layernorm(name, decay):
    rng = numpy.random.default_rng(0)
    weights = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") * 0.1 for _ in range(3)]
    optimizer = registry.resolve(
        {"o": {"@optimizers": "spacy-spert.AdamW.v1", "learn_rate": 0.1, "weight_decay": 0.01, "grad_clip": 0.0}}
    )["o"]
    ours = weights.copy()
    for g in grads:
        gradient = g.copy()
        ours, gradient = optimizer((7, name), ours, gradient)
        assert not gradient.any()  # the gradient is zeroed
    numpy.testing.assert_allclose(ours, reference(weights, grads, 0.1, decay), rtol=1e-5, atol=1e-6)


def test_gradient_clipping_per_array_and_schedule():
    from thinc.api import warmup_linear

    optimizer = create_adamw(
        warmup_linear(initial_rate=0.1, warmup_steps=2, total_steps=10), weight_decay=0.0, grad_clip=1.0
    )
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
    [
        ("entity_classifier.weight", 2.0),
        ("entity_identifier.weight", 10.0),
        ("encoder.layer.0.attention.self.query.weight", 1.0),
    ],
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
    from conftest import TRAIN_DATA, doc_annotations, gold_annotations, make_nlp, overfit
    from spacy.util import fix_random_seed

    fix_random_seed(0)
    nlp = make_nlp(tiny_bert)
    optimizer = create_adamw(1e-3, weight_decay=0.01, grad_clip=1.0, grad_clip_scope="global", correct_bias=False)
    overfit(nlp, optimizer=optimizer)
    assert not optimizer._held
    for words, entities, relations in TRAIN_DATA:
        doc = nlp(" ".join(words))
        assert doc_annotations(doc) == gold_annotations(entities, relations)


class ReferenceAdamW(Optimizer):
    """spacy-spert.AdamW.v1 as it was before its multi-tensor step (commit
    42f3e41), verbatim but for docstrings: one fused torch.optim.AdamW per
    parameter array, a gradient copy per array and step for global clipping."""

    def __init__(
        self,
        learn_rate,
        *,
        weight_decay,
        beta1=0.9,
        beta2=0.999,
        eps=1e-6,
        grad_clip=1.0,
        grad_clip_scope="array",
        correct_bias=True,
        no_decay=optimizers.NO_DECAY,
        learn_rate_scales=None,
    ):
        super().__init__(learn_rate, L2=0.0, beta1=beta1, beta2=beta2, eps=eps, grad_clip=grad_clip, use_averages=False)
        self.weight_decay = weight_decay
        self.grad_clip_scope = grad_clip_scope
        self.correct_bias = correct_bias
        self.no_decay = no_decay
        self.learn_rate_scales = dict(learn_rate_scales or {})
        self._torch = {}
        self._held = {}

    def decays(self, key):
        name = key[1] if isinstance(key[1], str) else ""
        return bool(self.weight_decay) and not name.endswith(self.no_decay)

    def scale(self, key):
        name = key[1] if isinstance(key[1], str) else ""
        prefixes = [prefix for prefix in self.learn_rate_scales if name.startswith(prefix)]
        return float(self.learn_rate_scales[max(prefixes, key=len)]) if prefixes else 1.0

    def __call__(self, key, weights, gradient, *, lr_scale=1.0):
        if len(gradient) < 1:
            return weights, gradient
        w = xp2torch(weights)
        g = xp2torch(gradient)
        if self.grad_clip_scope == "global":
            if key in self._held:
                self.apply_held()
            self._held[key] = (w, g.clone(), lr_scale)
        else:
            if self.grad_clip:
                norm = float(torch.linalg.vector_norm(g))
                if norm > self.grad_clip:
                    g.mul_(self.grad_clip / norm)
            self._update(key, w, g, lr_scale)
        g.zero_()
        return weights, gradient

    def apply_held(self):
        if not self._held:
            return
        held, self._held = self._held, {}
        if self.grad_clip:
            grads = [g for _, g, _ in held.values()]
            norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads])
            coefficient = self.grad_clip / (float(torch.linalg.vector_norm(norms)) + 1e-6)
            if coefficient < 1.0:
                for g in grads:
                    g.mul_(coefficient)
        for key, (w, g, lr_scale) in held.items():
            self._update(key, w, g, lr_scale)

    def step_schedules(self):
        self.apply_held()
        super().step_schedules()

    def _update(self, key, w, g, lr_scale):
        self.nr_update[key] += 1
        if key not in self._torch:
            param = torch.nn.Parameter(w)
            optimizer = torch.optim.AdamW(
                [param],
                lr=self.learn_rate,
                betas=(self.b1, self.b2),
                eps=self.eps,
                weight_decay=self.weight_decay if self.decays(key) else 0.0,
                fused=w.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16),
            )
            self._torch[key] = (param, optimizer, self.scale(key))
        param, optimizer, scale = self._torch[key]
        group = optimizer.param_groups[0]
        lr = self.learn_rate * lr_scale * scale
        decay = self.weight_decay if self.decays(key) else 0.0
        if self.correct_bias:
            group.update(lr=lr, eps=self.eps, weight_decay=decay)
        else:
            t = self.nr_update[key]
            bc1, root_bc2 = 1 - self.b1**t, math.sqrt(1 - self.b2**t)
            corrected = lr * bc1 / root_bc2
            group.update(lr=corrected, eps=self.eps / root_bc2, weight_decay=decay * lr / corrected if lr else 0.0)
        param.data = w
        param.grad = g
        optimizer.step()
        param.grad = None


# Names as in MiniLM + the SpERT head: decayed, not decayed (bias, LayerNorm),
# and learning-rate scales by prefix.
PARAMS = [
    ("embeddings.word_embeddings.weight", (50, 8)),
    ("encoder.layer.0.attention.self.query.weight", (8, 8)),
    ("encoder.layer.0.attention.self.query.bias", (8,)),
    ("encoder.layer.0.output.LayerNorm.weight", (8,)),
    ("entity_classifier.weight", (4, 8)),
    ("relation_classifier.bias", (3,)),
]
# Gradient sizes per step: global norms above 1 (clipped) and below.
GRAD_SCALES = (3.0, 0.01, 1.5, 0.2, 5.0, 0.05)
# Per-array clipping gives the same numbers bit for bit. Global clipping now
# scales the gradients inside the fused kernel (dividing by the inverse of the
# factor instead of multiplying by it), so a weight may differ in its last
# bits (by at most 2.4e-7 here, on the CPU).
TOLERANCE = {"array": {"rtol": 0, "atol": 0}, "global": {"rtol": 1e-6, "atol": 1e-7}}


@pytest.mark.parametrize("scope", ["array", "global"])
@pytest.mark.parametrize("correct_bias", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_same_numbers_as_the_per_array_implementation(scope, correct_bias, weight_decay):
    """Six steps of several arrays, with a warm-up schedule, learning-rate
    scales by name and lr_scale by call: the multi-tensor step gives the
    numbers of one torch.optim.AdamW per array."""
    from thinc.api import warmup_linear

    settings = {
        "weight_decay": weight_decay,
        "grad_clip": 1.0,
        "grad_clip_scope": scope,
        "correct_bias": correct_bias,
        "learn_rate_scales": {"entity_": 10, "relation_": 5},
    }
    ours = create_adamw(warmup_linear(initial_rate=0.01, warmup_steps=2, total_steps=10), **settings)
    reference = ReferenceAdamW(warmup_linear(initial_rate=0.01, warmup_steps=2, total_steps=10), **settings)
    rng = numpy.random.default_rng(4)
    start = [rng.normal(size=shape).astype("float32") for _, shape in PARAMS]
    weights = {"ours": [w.copy() for w in start], "reference": [w.copy() for w in start]}
    for scale in GRAD_SCALES:
        grads = [rng.normal(size=w.shape).astype("float32") * scale for w in start]
        for run, optimizer in (("ours", ours), ("reference", reference)):
            for i, ((name, _), g) in enumerate(zip(PARAMS, grads)):
                gradient = g.copy()
                lr_scale = 0.5 if i == 1 else 1.0
                weights[run][i], gradient = optimizer((i, name), weights[run][i], gradient, lr_scale=lr_scale)
                assert not gradient.any()
            optimizer.step_schedules()
        for (name, _), got, want in zip(PARAMS, weights["ours"], weights["reference"]):
            numpy.testing.assert_allclose(got, want, err_msg=name, **TOLERANCE[scope])
    assert ours.learn_rate == reference.learn_rate > 0
    assert numpy.abs(weights["ours"][0] - start[0]).max() > 1e-3  # the weights moved


@pytest.mark.parametrize("scope", ["array", "global"])
@pytest.mark.parametrize("correct_bias", [True, False])
def test_same_numbers_through_finish_update(scope, correct_bias):
    """spacy train's path: a thinc model holding a PyTorch module (called by
    the PyTorchShim with views of the torch tensors) and a thinc layer."""
    from thinc.api import Linear, PyTorchWrapper, chain, fix_random_seed

    def model():
        fix_random_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.LayerNorm(6), torch.nn.Tanh())
        return chain(PyTorchWrapper(module), Linear(2, 6)).initialize(numpy.zeros((2, 3), "float32"))

    settings = {"weight_decay": 0.01, "grad_clip": 0.5, "grad_clip_scope": scope, "correct_bias": correct_bias}
    runs = [(model(), create_adamw(0.05, **settings)), (model(), ReferenceAdamW(0.05, **settings))]
    x = numpy.random.default_rng(5).normal(size=(8, 3)).astype("float32")
    for step in range(4):
        for net, optimizer in runs:
            y, backprop = net.begin_update(x)
            backprop(numpy.ones_like(y) * (10 if step % 2 else 0.01))  # clipped, then not
            net.finish_update(optimizer)
            optimizer.step_schedules()
    (ours, _), (reference, _) = runs
    for got, want in zip(params(ours), params(reference)):
        numpy.testing.assert_allclose(got, want, **TOLERANCE[scope])


def params(model):
    """Every parameter array of a thinc model and of the PyTorch modules inside it."""
    arrays = []
    for node in model.walk():
        arrays += [node.get_param(name).copy() for name in node.param_names]
        for shim in node.shims:
            arrays += [p.detach().numpy().copy() for p in shim._model.parameters()]
    return arrays


def test_one_adamw_call_per_parameter_group(monkeypatch):
    """A global step is one multi-tensor AdamW call per group of parameters
    (weight decay or not, learning-rate scale), one norm, and gradient copies
    kept from step to step."""
    calls = []
    adamw = optimizers.adamw

    def counted(params, *args, **kwargs):
        calls.append(len(params))
        return adamw(params, *args, **kwargs)

    monkeypatch.setattr(optimizers, "adamw", counted)
    optimizer = create_adamw(0.01, grad_clip_scope="global", learn_rate_scales={"entity_": 10})
    rng = numpy.random.default_rng(6)
    weights = [rng.normal(size=shape).astype("float32") for _, shape in PARAMS]
    copies = []
    for step in range(2):
        for i, (name, _) in enumerate(PARAMS):
            optimizer((i, name), weights[i], rng.normal(size=weights[i].shape).astype("float32"))
        assert len(calls) == 3 * step  # held until the step ends
        optimizer.step_schedules()
        copies.append([t.data_ptr() for t in optimizer._grad_copies.values()])
    # decayed x1: 2 arrays, not decayed x1: 3, entity_ x10 (decayed): 1
    assert sorted(calls) == [1, 1, 2, 2, 3, 3]
    assert copies[0] == copies[1]
