"""Noise functions: map an unconstrained variable ``w`` to a perturbation with ``|g(w)| <= eps``.

All take a unitless ``w`` (so one learning rate works at every eps) and return
``eps * f(w)`` with ``|f| <= 1`` by construction, which is the paper's indirect generation:
the gradient flows into ``w`` without clipping (tanh, sigmoid) or, for the ``clip`` ablation,
through a clamp plus a projection of ``w`` after each step (the classic projected variable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class NoiseFunction:
    """``f``: w -> [-1, 1]; ``inverse``: [-1, 1] -> w (for random starts); ``project``: keep w in range."""

    f: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]
    projected: bool = False

    def __call__(self, w: torch.Tensor, eps: float) -> torch.Tensor:
        return eps * self.f(w)

    @torch.no_grad()
    def project_(self, w: torch.Tensor) -> None:
        """Projected variables stay in [-1, 1] so their gradient never dies outside the clamp."""
        if self.projected:
            w.clamp_(-1.0, 1.0)


_SAFE = 1 - 1e-6  # keeps atanh/logit finite at the bound

NOISE_FUNCTIONS: dict[str, NoiseFunction] = {
    "tanh": NoiseFunction(torch.tanh, lambda u: torch.atanh(u.clamp(-_SAFE, _SAFE))),
    "sigmoid": NoiseFunction(lambda w: 2 * torch.sigmoid(w) - 1,
                             lambda u: torch.logit((u.clamp(-_SAFE, _SAFE) + 1) / 2)),
    "clip": NoiseFunction(lambda w: w.clamp(-1.0, 1.0), lambda u: u.clone(), projected=True),
}
