"""``masked_ce``: the cross-entropy of the pixels not yet done (SEA's masked CE)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOSSES, Loss, cross_entropy


@LOSSES.register("masked_ce")
@dataclass(frozen=True)
class MaskedCrossEntropy(Loss):
    def term(self, logits, inputs):
        ell = cross_entropy(logits, inputs.target)
        return ell * (~inputs.done(logits)).to(ell.dtype)
