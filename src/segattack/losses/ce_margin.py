"""``ce_margin``: SEA's masked cross-entropy for the first half of the steps, then the logit
margin (both stop pulling a pixel kappa logits past the boundary). On adversarially trained
models the masked CE's weight on pixels near the boundary is the stronger start at small eps,
the margin's even push over every pixel not yet done the stronger finish at large eps
(docs/performance.md, "Defended models")."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOSSES
from .margin import Margin
from .masked_ce import masked_cross_entropy


@LOSSES.register("ce_margin")
@dataclass(frozen=True)
class MaskedCEThenMargin(Margin):
    def term(self, logits, inputs):
        if inputs.step < inputs.steps // 2:
            return masked_cross_entropy(logits, inputs, self.kappa)
        return super().term(logits, inputs)
