"""``masked_ce``: the cross-entropy of the pixels not yet done (SEA's masked CE); with
``attack.kappa`` > 0 a pixel keeps pulling until it is kappa logits past the boundary."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..keytypes import NonNegFloat
from .base import LOSSES, Loss, LossInputs, cross_entropy
from .margin import margin


def masked_cross_entropy(logits: torch.Tensor, inputs: LossInputs, kappa: float = 0.0) -> torch.Tensor:
    """Per-pixel cross-entropy to ``t``, 0 where the attack is already ``kappa`` past the
    boundary (the logit margin ``max_{j != t} z_j - z_t`` >= kappa untargeted, <= -kappa
    targeted): kappa 0 masks exactly the done pixels."""
    ell = cross_entropy(logits, inputs.target)
    gap = margin(logits, inputs.target)
    pulling = gap > -kappa if inputs.targeted else gap < kappa
    return ell * pulling.to(ell.dtype)


@LOSSES.register("masked_ce")
@dataclass(frozen=True)
class MaskedCrossEntropy(Loss):
    """Args:
        kappa: a pixel stops pulling once it is kappa logits past the boundary (``attack.kappa``;
            0, SEA's mask, unless the method's file sets it: ``attack=pgd`` has 1), so a barely
            fooled pixel is not left where the next step flips it back.
    """

    kappa: NonNegFloat = 0.0

    def term(self, logits, inputs):
        return masked_cross_entropy(logits, inputs, self.kappa)
