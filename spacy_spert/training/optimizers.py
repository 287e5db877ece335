"""``spacy-spert.AdamW.v1``: the optimizer SpERT is trained with, for spaCy.

SpERT fine-tunes with AdamW (decoupled weight decay 0.01, not applied to
biases and LayerNorm weights). thinc's ``Adam.v1`` with
``L2_is_weight_decay`` decays every array and runs a numpy kernel per array,
which on CPU takes more time per step than the transformer's backward pass.
This optimizer keeps thinc's ``Optimizer`` interface (schedules, spaCy's
training loop, ``finish_update``) and updates each array in place with
``torch.optim.AdamW`` (fused kernel; zero-copy views of the numpy or cupy
arrays thinc passes in).

The reference implementation clips the gradient's global L2 norm over all
parameters to 1.0 (``torch.nn.utils.clip_grad_norm_``) and runs transformers'
AdamW with ``correct_bias=False``. Both are settings here:

- ``grad_clip_scope = "global"`` clips the norm over every array of the step.
  thinc's optimizers are called once per array during ``finish_update``, so the
  arrays' updates are held (a copy of each gradient) until the step ends and
  applied together by ``step_schedules()``, which ``spacy train`` calls once per
  step after every component's ``finish_update``. Loops of your own must call
  ``optimizer.step_schedules()`` after each step too (an array seen twice
  before that also applies the held step). ``"array"`` clips each array on its
  own, as thinc's optimizers do, and updates at once.
- ``correct_bias = false`` leaves out Adam's bias correction of the moment
  estimates (the step is ``lr * m / (sqrt(v) + eps)``, weight decay
  ``lr * weight_decay``), as the reference does.
"""
import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from spacy.util import registry
from thinc.api import Optimizer, xp2torch
from thinc.types import FloatsXd

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")
CLIP_SCOPES = ("array", "global")


@registry.optimizers("spacy-spert.AdamW.v1")
def create_adamw(
    learn_rate=5e-5,
    *,
    weight_decay: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-6,
    grad_clip: float = 1.0,
    grad_clip_scope: str = "array",
    correct_bias: bool = True,
    no_decay: Sequence[str] = NO_DECAY,
    learn_rate_scales: Optional[Mapping[str, float]] = None,
) -> "AdamW":
    """AdamW with decoupled weight decay, skipped for parameters whose name ends
    with one of ``no_decay``.

    learn_rate (float or schedule): The learning rate (a thinc schedule such as
        ``warmup_linear.v1`` works as for ``Adam.v1``).
    weight_decay (float): Decoupled weight decay (0.01 in SpERT).
    beta1, beta2, eps (float): Adam's moment rates and epsilon.
    grad_clip (float): The largest L2 norm of the gradient (0: no clipping).
    grad_clip_scope (str): ``"global"``: the norm over all parameters of a
        step, as SpERT's reference; ``"array"``: each parameter array's own
        norm, as thinc.
    correct_bias (bool): Adam's bias correction of the moment estimates
        (``False`` in SpERT's reference).
    no_decay (Sequence[str]): Name suffixes of parameters without weight decay.
    learn_rate_scales (Optional[Mapping[str, float]]): Learning-rate multipliers
        by parameter-name prefix, the longest matching prefix wins; e.g.
        ``{"width_embedding": 10, "entity_": 10, "relation_": 10}`` trains the
        SpERT head (its parameters are named ``width_embedding.*``,
        ``entity_*`` and ``relation_*``) 10x faster than the encoder. Default:
        every parameter at the schedule's rate, as in SpERT.
    RETURNS (AdamW): The optimizer.
    """
    return AdamW(
        learn_rate,
        weight_decay=weight_decay,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        grad_clip=grad_clip,
        grad_clip_scope=grad_clip_scope,
        correct_bias=correct_bias,
        no_decay=tuple(no_decay),
        learn_rate_scales=learn_rate_scales,
    )


def _name(key: Tuple[int, str]) -> str:
    """The parameter name of an optimizer key (id, name); "" when it has none."""
    return key[1] if isinstance(key[1], str) else ""


class AdamW(Optimizer):
    """A thinc ``Optimizer`` whose update is ``torch.optim.AdamW``."""

    def __init__(
        self,
        learn_rate,
        *,
        weight_decay: float,
        beta1: float,
        beta2: float,
        eps: float,
        grad_clip: float,
        grad_clip_scope: str = "array",
        correct_bias: bool = True,
        no_decay: Tuple[str, ...],
        learn_rate_scales: Optional[Mapping[str, float]] = None,
    ):
        if grad_clip_scope not in CLIP_SCOPES:
            raise ValueError(f"grad_clip_scope must be one of {CLIP_SCOPES}, got {grad_clip_scope!r}")
        super().__init__(
            learn_rate,
            L2=0.0,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            grad_clip=grad_clip,
            use_averages=False,
        )
        self.weight_decay = weight_decay
        self.grad_clip_scope = grad_clip_scope
        self.correct_bias = correct_bias
        self.no_decay = no_decay
        self.learn_rate_scales = dict(learn_rate_scales or {})
        # key -> (parameter, its AdamW, its learning-rate multiplier)
        self._torch: Dict[Tuple[int, str], Tuple[torch.nn.Parameter, torch.optim.AdamW, float]] = {}
        # global clipping: key -> (weights, a copy of the gradient, lr_scale), applied by step_schedules
        self._held: Dict[Tuple[int, str], Tuple[torch.Tensor, torch.Tensor, float]] = {}

    def decays(self, key: Tuple[int, str]) -> bool:
        """Whether the parameter ``key`` = (id, name) gets weight decay."""
        return bool(self.weight_decay) and not _name(key).endswith(self.no_decay)

    def scale(self, key: Tuple[int, str]) -> float:
        """The learning-rate multiplier of the parameter ``key`` = (id, name)."""
        name = _name(key)
        prefixes = [prefix for prefix in self.learn_rate_scales if name.startswith(prefix)]
        return float(self.learn_rate_scales[max(prefixes, key=len)]) if prefixes else 1.0

    def __call__(self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0):
        """Update ``weights`` in place from ``gradient`` (then zeroed); with
        global clipping the update is held until :meth:`step_schedules`.

        key (Tuple[int, str]): (node or shim id, parameter name).
        RETURNS (Tuple[FloatsXd, FloatsXd]): the weights and the gradient.
        """
        if len(gradient) < 1:
            return weights, gradient
        w = xp2torch(weights)
        g = xp2torch(gradient)
        if self.grad_clip_scope == "global":
            if key in self._held:  # a new step began without step_schedules()
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

    def apply_held(self) -> None:
        """Apply the held updates of a step, their gradients clipped together
        to a global L2 norm of at most ``grad_clip`` (as
        ``torch.nn.utils.clip_grad_norm_``). Nothing happens if none are held.
        """
        if not self._held:
            return
        held, self._held = self._held, {}
        if self.grad_clip:
            grads = [g for _, g, _ in held.values()]
            norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads])
            coefficient = self.grad_clip / (float(torch.linalg.vector_norm(norms)) + 1e-6)  # one sync per step
            if coefficient < 1.0:
                for g in grads:
                    g.mul_(coefficient)
        for key, (w, g, lr_scale) in held.items():
            self._update(key, w, g, lr_scale)

    def step_schedules(self) -> None:
        """End the step: apply held updates, then advance the schedules."""
        self.apply_held()
        super().step_schedules()

    def _update(self, key: Tuple[int, str], w: torch.Tensor, g: torch.Tensor, lr_scale: float) -> None:
        """One AdamW step of the parameter ``key`` (weights ``w``, updated in
        place) with the gradient ``g``."""
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
            # torch's AdamW divides m by bc1 and v by bc2; undo both:
            # lr/bc1 * m/(sqrt(v)/sqrt(bc2) + eps) with lr = lr_ref*bc1/sqrt(bc2),
            # eps = eps_ref/sqrt(bc2) is lr_ref * m/(sqrt(v) + eps_ref); decay keeps lr_ref*wd.
            t = self.nr_update[key]
            bc1, root_bc2 = 1 - self.b1**t, math.sqrt(1 - self.b2**t)
            corrected = lr * bc1 / root_bc2
            group.update(lr=corrected, eps=self.eps / root_bc2, weight_decay=decay * lr / corrected if lr else 0.0)
        param.data = w
        param.grad = g
        optimizer.step()
        param.grad = None
