"""Attack losses (to minimise): per-model terms and their weighted joint sum."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..labels import IGNORE_INDEX


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (0 when the mask is empty, never NaN)."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1)


def model_loss(logits: torch.Tensor, labels: torch.Tensor, area: torch.Tensor,
               goal: torch.Tensor | None = None, keep: torch.Tensor | None = None,
               keep_weight: float = 0.0, ce_max: float | None = None) -> torch.Tensor:
    """The loss one model contributes.

    Untargeted (``goal`` None): ``-CE(labels)`` averaged over valid pixels in A, i.e. raise the
    cross-entropy of the true label. Targeted: ``CE(goal)`` over valid pixels in A. With
    ``keep_weight > 0``, ``keep_weight * CE(keep)`` over valid pixels outside A keeps the clean
    prediction ``keep`` there (less collateral). ``ce_max`` caps the untargeted per-pixel
    cross-entropy: a pixel pushed that far stops pulling, so in a joint attack a model that is
    already fooled no longer dominates the sum (unbounded -CE lets it).

    Shape:
        logits (B, C, H, W); labels, goal, keep (B, H, W) int64 with 255 = ignore; area (B, H, W) bool.
    """
    valid = labels != IGNORE_INDEX
    in_area = area & valid
    if goal is None:
        ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
        if ce_max is not None:
            ce = ce.clamp(max=ce_max)
        loss = -masked_mean(ce, in_area)
    else:
        ce = F.cross_entropy(logits, goal, ignore_index=IGNORE_INDEX, reduction="none")
        loss = masked_mean(ce, in_area)
    if keep_weight > 0 and keep is not None:
        ce_keep = F.cross_entropy(logits, keep, ignore_index=IGNORE_INDEX, reduction="none")
        loss = loss + keep_weight * masked_mean(ce_keep, ~area & valid)
    return loss
