"""``js``: the Jensen-Shannon divergence of the softmax and the one-hot ``t`` (bounded by ln 2,
so done pixels stop pulling)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .base import LOSSES, Loss, safe_target


def jensen_shannon(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """JS(softmax(logits) || onehot(t)) per pixel, in nats (at most ln 2)."""
    p = logits.float().softmax(1)
    q = F.one_hot(safe_target(t), logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    m = 0.5 * (p + q)
    kl_pm = (p * (p.clamp(min=1e-12).log() - m.clamp(min=1e-12).log())).sum(1)
    kl_qm = (q * (q.clamp(min=1e-12).log() - m.clamp(min=1e-12).log())).sum(1)
    return 0.5 * (kl_pm + kl_qm)


@LOSSES.register("js")
@dataclass(frozen=True)
class JensenShannon(Loss):
    def term(self, logits, inputs):
        return jensen_shannon(logits, inputs.target)
