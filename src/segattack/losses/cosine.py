"""``cosine``: the cosine loss of Halmosi, Mohos, Jelasity (ECCV 2024, "Evaluating the Adversarial
Robustness of Semantic Segmentation: Trying Harder Pays Off"), used with their projected Adam.

Per pixel ``1 - cos(z, e_t)`` between the logits ``z`` and the one-hot vector of class ``t``,
i.e. ``1 - z_t / ||z||_2``: bounded in [0, 2], so no pixel dominates the mean however large its
logits, and it keeps a gradient on pixels already fooled (unlike a capped or masked loss).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LOSSES, Loss, safe_target


@LOSSES.register("cosine")
@dataclass(frozen=True)
class Cosine(Loss):
    def term(self, logits, inputs):
        logits = logits.float()
        z_t = logits.gather(1, safe_target(inputs.target)[:, None])[:, 0]
        return 1 - z_t / logits.norm(dim=1).clamp(min=1e-12)
