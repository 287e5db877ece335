"""``spacy-spert.AdamW.v1``: the optimizer SpERT is trained with, for spaCy.

SpERT fine-tunes with AdamW (decoupled weight decay 0.01, not applied to
biases and LayerNorm weights). thinc's ``Adam.v1`` with
``L2_is_weight_decay`` decays every array and runs a numpy kernel per array,
which on CPU takes more time per step than the transformer's backward pass.
This optimizer keeps thinc's ``Optimizer`` interface (schedules, spaCy's
training loop, ``finish_update``) and updates the arrays in place with torch's
AdamW (``torch.optim.adamw.adamw``, fused kernels; zero-copy views of the
numpy or cupy arrays thinc passes in).

The reference implementation clips the gradient's global L2 norm over all
parameters to 1.0 (``torch.nn.utils.clip_grad_norm_``) and runs transformers'
AdamW with ``correct_bias=False``. Both are settings here:

- ``grad_clip_scope = "global"`` clips the norm over every array of the step.
  thinc's optimizers are called once per array during ``finish_update``, so the
  arrays' updates are held until the step ends and applied together by
  ``step_schedules()``, which ``spacy train`` calls once per step after every
  component's ``finish_update``: one multi-tensor norm, then one multi-tensor
  AdamW call per group of parameters that share a learning rate, epsilon and
  weight decay (decayed or not, learning-rate scale). The caller zeroes each
  gradient when its call returns, so each is copied first (to an array kept
  from step to step): the only copy global clipping needs. Loops of your own
  must call ``optimizer.step_schedules()`` after each step too (an array seen
  twice before that also applies the held step). ``"array"`` clips each array
  on its own, as thinc's optimizers do, and updates it at once, without a
  copy (holding it would need one), so loops that never call
  ``step_schedules()`` work as with thinc's optimizers.
- ``correct_bias = false`` leaves out Adam's bias correction of the moment
  estimates (the step is ``lr * m / (sqrt(v) + eps)``, weight decay
  ``lr * weight_decay``), as the reference does.

Until the multi-tensor step, each array had its own ``torch.optim.AdamW`` and
its own update; the numbers are the same but for the global clipping: the
fused kernel now scales the gradients as it reads them (dividing by the
inverse of the clipping factor instead of multiplying by it), which moves a
weight by at most a few units in its last place per step
(``tests/training/test_optimizers.py`` compares with that implementation).
"""

import math
from collections import defaultdict
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy
import torch
from spacy.util import registry
from thinc.api import Optimizer, xp2torch
from thinc.types import FloatsXd
from torch.optim.adamw import adamw

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


# torch's fused AdamW kernels take these dtypes (on the CPU since torch 2.4).
FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class AdamState(NamedTuple):
    """The AdamW state of one parameter array: its moment estimates and its
    step count, as ``torch.optim.AdamW`` keeps them."""

    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step: torch.Tensor
    fused: bool


class Update(NamedTuple):
    """One parameter array's part of an optimizer step."""

    key: Tuple[int, str]
    weights: torch.Tensor
    gradient: torch.Tensor
    lr_scale: float


class AdamW(Optimizer):
    """A thinc ``Optimizer`` whose update is torch's multi-tensor AdamW."""

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
        # key -> its moments and step count
        self._state: Dict[Tuple[int, str], AdamState] = {}
        # key -> (whether its name gets weight decay, its learning-rate multiplier)
        self._rules: Dict[Tuple[int, str], Tuple[bool, float]] = {}
        # global clipping: key -> the step's update, applied by step_schedules
        self._held: Dict[Tuple[int, str], Update] = {}
        # global clipping: key -> the array its gradient is copied to (the
        # caller zeroes its gradient when the call returns), kept from step to
        # step: fresh copies took 3x as long on the CPU (new pages each step)
        self._grad_copies: Dict[Tuple[int, str], torch.Tensor] = {}

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
        w, g = as_torch(weights), as_torch(gradient)
        if self.grad_clip_scope == "global":
            if key in self._held:  # a new step began without step_schedules()
                self.apply_held()
            self._held[key] = Update(key, w, self._copy_gradient(key, g), lr_scale)
        else:
            if self.grad_clip:
                norm = float(torch.linalg.vector_norm(g))
                if norm > self.grad_clip:
                    g.mul_(self.grad_clip / norm)
            self._update([Update(key, w, g, lr_scale)])
        g.zero_()
        return weights, gradient

    def _copy_gradient(self, key: Tuple[int, str], g: torch.Tensor) -> torch.Tensor:
        """``g`` copied to the array kept for ``key`` (made or remade when
        there is none of its shape, dtype and device)."""
        copy = self._grad_copies.get(key)
        if copy is None or copy.shape != g.shape or copy.dtype != g.dtype or copy.device != g.device:
            copy = self._grad_copies[key] = torch.empty_like(g, memory_format=torch.contiguous_format)
        return copy.copy_(g)

    def apply_held(self) -> None:
        """Apply the held updates of a step, their gradients clipped together
        to a global L2 norm of at most ``grad_clip`` (as
        ``torch.nn.utils.clip_grad_norm_``). Nothing happens if none are held.
        """
        if not self._held:
            return
        held, self._held = list(self._held.values()), {}
        clip = None
        if self.grad_clip:
            coefficient = self.grad_clip / (global_norm([update.gradient for update in held]) + 1e-6)
            clip = coefficient if coefficient < 1.0 else None
        self._update(held, clip=clip)

    def step_schedules(self) -> None:
        """End the step: apply held updates, then advance the schedules."""
        self.apply_held()
        super().step_schedules()

    def _update(self, updates: Sequence[Update], *, clip: Optional[float] = None) -> None:
        """One AdamW step of every parameter in ``updates`` (weights updated
        in place), one torch AdamW call (fused, one kernel per dtype and
        device) per group of parameters with the same learning rate, epsilon
        and weight decay (by weight decay and learning-rate scale, and by step
        count without bias correction).

        updates (Sequence[Update]): The parameters, their gradients and lr_scale.
        clip (Optional[float]): A factor for every gradient (global clipping):
            the fused kernel divides by its inverse as it reads them, which
            saves a pass over all gradients (a gradient value may differ from
            multiplying by the factor in its last bit).
        """
        groups: Dict[Tuple[float, float, float, bool], List[Tuple[Update, AdamState]]] = defaultdict(list)
        for update in updates:
            key, w = update.key, update.weights
            self.nr_update[key] += 1
            if key not in self._rules:
                self._rules[key] = (not _name(key).endswith(self.no_decay), self.scale(key))
            decays, scale = self._rules[key]
            decay = self.weight_decay if decays else 0.0
            state = self._state.get(key)
            if state is None:
                state = self._state[key] = new_state(w)
            elif state.exp_avg.shape != w.shape:  # the fused kernels do not check
                raise ValueError(f"parameter {key} changed shape: {tuple(state.exp_avg.shape)} -> {tuple(w.shape)}")
            lr = self.learn_rate * update.lr_scale * scale
            if self.correct_bias:
                group = (lr, self.eps, decay)
            else:
                # torch's AdamW divides m by bc1 and v by bc2; undo both:
                # lr/bc1 * m/(sqrt(v)/sqrt(bc2) + eps) with lr = lr_ref*bc1/sqrt(bc2),
                # eps = eps_ref/sqrt(bc2) is lr_ref * m/(sqrt(v) + eps_ref); decay keeps lr_ref*wd.
                t = self.nr_update[key]
                bc1, root_bc2 = 1 - self.b1**t, math.sqrt(1 - self.b2**t)
                corrected = lr * bc1 / root_bc2
                group = (corrected, self.eps / root_bc2, decay * lr / corrected if lr else 0.0)
            groups[group + (state.fused,)].append((update, state))
        for (lr, eps, decay, fused), members in groups.items():
            states = [state for _, state in members]
            grads = [update.gradient for update, _ in members]
            grad_scale = None
            if clip is not None and fused:
                grad_scale = torch.tensor(1.0 / clip, dtype=torch.float32, device=grads[0].device)
            elif clip is not None:
                torch._foreach_mul_(grads, clip)
            adamw(
                [update.weights for update, _ in members],
                grads,
                [state.exp_avg for state in states],
                [state.exp_avg_sq for state in states],
                [],
                [state.step for state in states],
                fused=fused or None,
                grad_scale=grad_scale,
                amsgrad=False,
                beta1=self.b1,
                beta2=self.b2,
                lr=lr,
                weight_decay=decay,
                eps=eps,
                maximize=False,
            )


def as_torch(array: FloatsXd) -> torch.Tensor:
    """A torch view of a numpy or cupy array (no copy).

    array (FloatsXd): The array.
    RETURNS (torch.Tensor): The view: ``torch.from_numpy`` for numpy arrays
        (thinc's ``xp2torch``, which also serves cupy, costs 10x as much per
        call, and the optimizer is called once per array).
    """
    return torch.from_numpy(array) if isinstance(array, numpy.ndarray) else xp2torch(array)


def new_state(w: torch.Tensor) -> AdamState:
    """The AdamW state of a parameter array before its first step, as
    ``torch.optim.AdamW`` makes it (zero moments; a float32 step count on the
    array's device for the fused kernels).

    w (torch.Tensor): The parameter array.
    RETURNS (AdamState): Its state.
    """
    fused = w.dtype in FUSED_DTYPES
    step = torch.zeros((), dtype=torch.float32, device=w.device) if fused else torch.tensor(0.0, dtype=torch.float32)
    return AdamState(
        torch.zeros_like(w, memory_format=torch.preserve_format),
        torch.zeros_like(w, memory_format=torch.preserve_format),
        step,
        fused,
    )


def global_norm(grads: List[torch.Tensor]) -> float:
    """The L2 norm of all the arrays together: the norm of their norms, each
    computed in float32 (one multi-tensor norm for the float32 arrays).

    grads (List[torch.Tensor]): The arrays.
    RETURNS (float): The norm (the only sync with the device per step).
    """
    single = [g for g in grads if g.dtype == torch.float32]
    norms = list(torch._foreach_norm(single)) if single else []
    norms += [torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads if g.dtype != torch.float32]
    return float(torch.linalg.vector_norm(torch.stack(norms)))
