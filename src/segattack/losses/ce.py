"""``ce``: the cross-entropy, optionally capped (untargeted) so fooled pixels stop pulling."""

from __future__ import annotations

from dataclasses import dataclass

from ..keytypes import PositiveFloat
from .base import LOSSES, Loss, cross_entropy


@LOSSES.register("ce")
@dataclass(frozen=True)
class CrossEntropy(Loss):
    """Args:
        ce_max: cap of the untargeted per-pixel cross-entropy (``attack.ce_max``, e.g. 4.0);
            None = unbounded.
    """

    ce_max: PositiveFloat | None = None

    def term(self, logits, inputs):
        ell = cross_entropy(logits, inputs.target)
        if self.ce_max is not None and not inputs.targeted:
            ell = ell.clamp(max=self.ce_max)
        return ell
