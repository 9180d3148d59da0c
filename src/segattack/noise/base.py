"""Noise functions: map an unconstrained variable ``w`` to a perturbation with ``|g(w)| <= eps``
(``attack.noise`` names one of ``NOISE_FUNCTIONS``; one file each).

All take a unitless ``w`` (so one learning rate works at every eps) and return
``eps * f(w)`` with ``|f| <= 1`` by construction, which is the paper's indirect generation:
the gradient flows into ``w`` without clipping (tanh, sigmoid) or, for the ``clip`` ablation,
through a clamp plus a projection of ``w`` after each step (the classic projected variable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..registry import Registry

NOISE_FUNCTIONS = Registry("attack.noise")

SAFE = 1 - 1e-6  # keeps atanh/logit finite at the bound


@dataclass(frozen=True)
class NoiseFunction:
    """Base: ``f``: w -> [-1, 1]; ``inverse``: [-1, 1] -> w (for random starts); ``projected``:
    keep w in [-1, 1] after each step. Settings, if any, are the dataclass's fields."""

    name: ClassVar[str] = ""
    projected: ClassVar[bool] = False

    def f(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, w: torch.Tensor, eps: float) -> torch.Tensor:
        return eps * self.f(w)

    @torch.no_grad()
    def project_(self, w: torch.Tensor) -> None:
        """Projected variables stay in [-1, 1] so their gradient never dies outside the clamp."""
        if self.projected:
            w.clamp_(-1.0, 1.0)
