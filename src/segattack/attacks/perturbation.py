"""The perturbation of one attack: ``delta = R * eps * f(w)`` and the adversarial image it makes.

``Perturbation.adversarial`` is the one place an adversarial image is made from ``(x, w)``: the
universal fit, the per-image loop and the evaluation all call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .noise import NoiseFunction
from .regions import Region


class Perturbation:
    """Args:
        noise: ``f`` (``|f| <= 1``), so ``|delta| <= eps`` by construction.
        eps: L-inf bound in pixel units. init: ``zeros`` or ``uniform`` (PGD's random start).
        region: where delta may be non-zero.
    """

    def __init__(self, noise: NoiseFunction, eps: float, init: str, region: Region):
        self.noise, self.eps, self.init, self.region = noise, float(eps), init, region

    def initial_w(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """The starting ``w``: ``f(w) = 0``, or ``f(w) ~ U(-1, 1)`` for a random start."""
        if self.init == "uniform":
            u = torch.rand(tuple(shape), generator=generator) * 2 - 1
        else:
            u = torch.zeros(tuple(shape))
        return self.noise.inverse(u)

    def delta(self, w: torch.Tensor, mask: torch.Tensor, placement) -> torch.Tensor:
        """(B, 3, H, W) per-image perturbation for a batch whose region is ``mask``/``placement``."""
        return self.region.paste(self.noise(w, self.eps), mask, placement)

    def adversarial(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, placement
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_adv, delta)``: ``x_adv = clamp(x + delta, 0, 1)``."""
        delta = self.delta(w, mask, placement)
        return (x + delta).clamp(0, 1), delta

    def project_(self, w: torch.Tensor) -> None:
        self.noise.project_(w)
