"""``masked_spherical``: SEA's masked spherical loss (Croce, Singh, Hein, ECCV 2024, "Towards
Reliable Evaluation and Fast Training of Robust Semantic Segmentation Models").

The logit margin ``max_{j != t} u_j - u_t`` of the logits projected on the unit sphere,
``u = z / ||z||_2`` (the norm detached, as in the authors' code), on the pixels not yet done only
(weight 0 once a pixel is fooled): the normalisation keeps pixels with large logits from
dominating, the mask spends the step on the pixels still to flip.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOSSES, Loss
from .margin import margin


@LOSSES.register("masked_spherical")
@dataclass(frozen=True)
class MaskedSpherical(Loss):
    def term(self, logits, inputs):
        logits = logits.float()
        u = logits / logits.norm(dim=1, keepdim=True).detach().clamp(min=1e-12)
        ell = margin(u, inputs.target)
        return ell * (~inputs.done(logits)).to(ell.dtype)
