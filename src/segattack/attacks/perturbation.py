"""The perturbation of one attack: ``delta = R * eps * f(w)`` and the adversarial image it makes.

``Perturbation.apply`` is the one place an adversarial image is made: from ``(x, w)`` through
``adversarial`` (the universal fit, the per-image loop and the evaluation) and from saved deltas
(``perturbation=PATH`` of a per-image set).

``x + delta`` stays in [0, 1] without losing gradients (docs/design.md, "Attacks"): a per-image
``w`` is projected after every update onto the box where ``x + eps f(w)`` is a valid image, so the
clamp never bites; a universal ``w`` serves many images, so there the clamp is passed straight
through (its value is the clamp, its gradient the identity). Either way no pixel is frozen by a
zero gradient of the clamp.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..noise import NoiseFunction
from ..regions import Region


def clamp_straight_through(v: torch.Tensor) -> torch.Tensor:
    """``clamp(v, 0, 1)`` in value, identity in gradient."""
    if not v.requires_grad:
        return v.clamp(0, 1)
    return v + (v.clamp(0, 1) - v).detach()


class Perturbation:
    """Args:
        noise: ``f`` (``|f| <= 1``), so ``|delta| <= eps`` by construction.
        eps: L-inf bound in pixel units. init: ``zeros`` or ``uniform`` (PGD's random start).
        region: where delta may be non-zero.
    """

    def __init__(self, noise: NoiseFunction, eps: float, init: str, region: Region):
        self.noise, self.eps, self.init, self.region = noise, float(eps), init, region

    @classmethod
    def of(cls, spec) -> Perturbation:
        """The perturbation an ``AttackSpec`` (or an ensemble member's) describes."""
        return cls(spec.noise, spec.eps, spec.init, spec.region)

    def initial_w(self, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
        """The starting ``w``: ``f(w) = 0``, or ``f(w) ~ U(-1, 1)`` for a random start."""
        if self.init == "uniform":
            u = torch.rand(tuple(shape), generator=generator) * 2 - 1
        else:
            u = torch.zeros(tuple(shape))
        return self.noise.inverse(u)

    def w_of(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """A per-image ``w`` that makes ``x_adv`` from ``x`` (a warm start from an earlier result)."""
        return self.noise.inverse(((x_adv - x) / self.eps).clamp(-1, 1))

    def delta(self, w: torch.Tensor, mask: torch.Tensor, placement) -> torch.Tensor:
        """(B, 3, H, W) per-image perturbation for a batch whose region is ``mask``/``placement``."""
        return self.region.paste(self.noise(w, self.eps), mask, placement)

    def adversarial(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, placement
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_adv, delta)``: ``x_adv = clamp(x + delta, 0, 1)`` (gradient passed through)."""
        delta = self.delta(w, mask, placement)
        return self.apply(x, delta), delta

    @staticmethod
    def apply(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``clamp(x + delta, 0, 1)``, its gradient passed through (``clamp_straight_through``)."""
        return clamp_straight_through(x + delta)

    def feasible_bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds on a per-image ``w`` (shaped like ``x``) that keep ``x + eps f(w)`` in [0, 1];
        -inf/inf where only the eps ball binds."""
        lo = (-x / self.eps).clamp(min=-1)
        hi = ((1 - x) / self.eps).clamp(max=1)
        inf = torch.tensor(float("inf"))
        return (torch.where(lo > -1, self.noise.inverse(lo), -inf),
                torch.where(hi < 1, self.noise.inverse(hi), inf))

    @torch.no_grad()
    def project_(self, w: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Keep ``w`` in the noise function's range and, given ``feasible_bounds``, in the box."""
        self.noise.project_(w)
        if bounds is not None:
            w.clamp_(*bounds)
