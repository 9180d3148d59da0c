"""``dlr``: the margin over the spread of the top logits ``z_pi1 - z_pi3`` (after Croce & Hein
2020's DLR), capped at ``kappa`` like the margin."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LOSSES
from .margin import Margin, margin


def dlr(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``margin / (z_pi1 - z_pi3)`` per pixel: the margin's sign, but a pixel with large logits
    does not outweigh one with small logits in the image's mean (needs 3+ classes).

    Unlike Croce & Hein's DLR the spread is detached, a per-pixel weight: its own gradient
    vanishes when the target ties with the third logit, and the targeted form needs no other
    denominator.
    """
    logits = logits.float()
    top = logits.detach().topk(3, dim=1).values
    return margin(logits, t) / (top[:, 0] - top[:, 2]).clamp(min=1e-6)


@LOSSES.register("dlr")
@dataclass(frozen=True)
class DLR(Margin):
    def ell(self, logits, t):
        return dlr(logits, t)
