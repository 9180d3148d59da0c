"""``margin``: the per-pixel logit margin ``max_{j != t} z_j - z_t`` (Carlini-Wagner), capped at
``kappa`` on the done side."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..keytypes import NonNegFloat
from .base import LOSSES, Loss, safe_target


def margin(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``max_{j != t} z_j - z_t`` per pixel: > 0 where the prediction is not ``t``."""
    t = safe_target(t)
    z_t = logits.gather(1, t[:, None])[:, 0]
    others = logits.scatter(1, t[:, None], float("-inf"))
    return others.amax(1) - z_t


@LOSSES.register("margin")
@dataclass(frozen=True)
class Margin(Loss):
    """Args:
        kappa: a pixel stops pulling once it is kappa past the boundary (``attack.kappa``), so a
            barely fooled pixel is not left where the next step flips it back.
    """

    kappa: NonNegFloat = 0.0

    def ell(self, logits, t):
        return margin(logits, t)

    def term(self, logits, inputs):
        ell = self.ell(logits, inputs.target)
        return ell.clamp(min=-self.kappa) if inputs.targeted else ell.clamp(max=self.kappa)
