"""``spacy-spert.AdamW.v1``: the optimizer SpERT is trained with, for spaCy.

SpERT fine-tunes with AdamW (decoupled weight decay 0.01, not applied to
biases and LayerNorm weights). thinc's ``Adam.v1`` with
``L2_is_weight_decay`` decays every array and runs a numpy kernel per array,
which on CPU takes more time per step than the transformer's backward pass.
This optimizer keeps thinc's ``Optimizer`` interface (schedules, spaCy's
training loop, ``finish_update``) and updates each array in place with
``torch.optim.AdamW`` (fused kernel; zero-copy views of the numpy or cupy
arrays thinc passes in).

Two differences from the reference implementation, which used transformers'
AdamW with ``correct_bias=False``: Adam's bias correction is on (torch's
AdamW), and gradient clipping is per parameter array (as in thinc), since an
optimizer called once per array cannot see the global norm.
"""
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from spacy.util import registry
from thinc.api import Optimizer, xp2torch
from thinc.types import FloatsXd

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")


@registry.optimizers("spacy-spert.AdamW.v1")
def create_adamw(
    learn_rate=5e-5,
    *,
    weight_decay: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-6,
    grad_clip: float = 1.0,
    no_decay: Sequence[str] = NO_DECAY,
    learn_rate_scales: Optional[Mapping[str, float]] = None,
) -> "AdamW":
    """AdamW with decoupled weight decay, skipped for parameters whose name ends
    with one of ``no_decay``.

    learn_rate (float or schedule): The learning rate (a thinc schedule such as
        ``warmup_linear.v1`` works as for ``Adam.v1``).
    weight_decay (float): Decoupled weight decay (0.01 in SpERT).
    beta1, beta2, eps (float): Adam's moment rates and epsilon.
    grad_clip (float): Clip each parameter array's gradient to this L2 norm (0: off).
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
        no_decay: Tuple[str, ...],
        learn_rate_scales: Optional[Mapping[str, float]] = None,
    ):
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
        self.no_decay = no_decay
        self.learn_rate_scales = dict(learn_rate_scales or {})
        # key -> (parameter, its AdamW, its learning-rate multiplier)
        self._torch: Dict[Tuple[int, str], Tuple[torch.nn.Parameter, torch.optim.AdamW, float]] = {}

    def decays(self, key: Tuple[int, str]) -> bool:
        """Whether the parameter ``key`` = (id, name) gets weight decay."""
        return bool(self.weight_decay) and not _name(key).endswith(self.no_decay)

    def scale(self, key: Tuple[int, str]) -> float:
        """The learning-rate multiplier of the parameter ``key`` = (id, name)."""
        name = _name(key)
        prefixes = [prefix for prefix in self.learn_rate_scales if name.startswith(prefix)]
        return float(self.learn_rate_scales[max(prefixes, key=len)]) if prefixes else 1.0

    def __call__(self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0):
        """Update ``weights`` in place from ``gradient`` (then zeroed).

        key (Tuple[int, str]): (node or shim id, parameter name).
        RETURNS (Tuple[FloatsXd, FloatsXd]): the weights and the gradient.
        """
        if len(gradient) < 1:
            return weights, gradient
        w = xp2torch(weights)
        g = xp2torch(gradient)
        self.nr_update[key] += 1
        if self.grad_clip:
            norm = float(torch.linalg.vector_norm(g))
            if norm > self.grad_clip:
                g.mul_(self.grad_clip / norm)
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
        param.data = w
        param.grad = g
        optimizer.param_groups[0]["lr"] = self.learn_rate * lr_scale * scale
        optimizer.step()
        param.grad = None
        g.zero_()
        return weights, gradient
