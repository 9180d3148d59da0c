"""Attack losses (to minimise), one registry: ``attack.loss`` names one of ``LOSSES``.

Every loss is built from a per-pixel term ``ell(logits, t)`` that grows as the prediction moves
away from class ``t``, and a per-pixel weight:

- untargeted (``t`` = the label): minimise ``-mean(w * ell)``, i.e. push pixels off their label;
- targeted (``t`` = the goal): minimise ``mean(w * ell)``, i.e. pull pixels to their goal.

A pixel is *done* when the attack already succeeds there (untargeted: ``pred != label``;
targeted: ``pred == goal``). The mean is per image, over its valid pixels of the area A, and the
per-image values are returned (B,), so a batch of images is a batch of independent attacks.

| loss | ell | weight |
|---|---|---|
| ``ce`` | cross-entropy (capped at ``ce_max`` when set, untargeted) | 1 |
| ``masked_ce`` | cross-entropy | 1 on pixels not yet done, 0 on done ones |
| ``segpgd`` | cross-entropy | ``1 - lambda_t`` not done, ``lambda_t`` done; ``lambda_t = t / 2T`` (Gu et al. 2022) |
| ``cospgd`` | cross-entropy | cosine of softmax and one-hot ``t`` (untargeted), 1 - that (targeted), detached (Agnihotri et al. 2023) |
| ``js`` | Jensen-Shannon divergence of softmax and one-hot ``t`` (bounded: done pixels stop pulling) | 1 |
| ``margin`` | ``max_{j != t} z_j - z_t``, capped at ``kappa`` (default 0) on the done side (Carlini-Wagner) | 1 |
| ``dlr`` | the margin over the spread of the top logits ``z_pi1 - z_pi3`` (detached; after Croce & Hein 2020's DLR), capped at ``kappa`` | 1 |
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ..labels import IGNORE_INDEX


def per_image_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of ``values`` over each image's ``mask`` (0 when it is empty, never NaN)."""
    m = mask.to(values.dtype)
    return (values * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


def _safe(t: torch.Tensor) -> torch.Tensor:
    """Ignored pixels get class 0 for the arithmetic; they are masked out of every mean."""
    return torch.where(t == IGNORE_INDEX, 0, t)


def cross_entropy(logits, t):
    return F.cross_entropy(logits, t, ignore_index=IGNORE_INDEX, reduction="none")


def jensen_shannon(logits, t):
    """JS(softmax(logits) || onehot(t)) per pixel, in nats (at most ln 2)."""
    p = logits.float().softmax(1)
    q = F.one_hot(_safe(t), logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    m = 0.5 * (p + q)
    kl_pm = (p * (p.clamp(min=1e-12).log() - m.clamp(min=1e-12).log())).sum(1)
    kl_qm = (q * (q.clamp(min=1e-12).log() - m.clamp(min=1e-12).log())).sum(1)
    return 0.5 * (kl_pm + kl_qm)


def margin(logits, t):
    """``max_{j != t} z_j - z_t`` per pixel: > 0 where the prediction is not ``t``."""
    t = _safe(t)
    z_t = logits.gather(1, t[:, None])[:, 0]
    others = logits.scatter(1, t[:, None], float("-inf"))
    return others.amax(1) - z_t


def dlr(logits, t):
    """``margin / (z_pi1 - z_pi3)`` per pixel: the margin's sign, but a pixel with large logits
    does not outweigh one with small logits in the image's mean (needs 3+ classes).

    Unlike Croce & Hein's DLR the spread is detached, a per-pixel weight: its own gradient
    vanishes when the target ties with the third logit, and the targeted form needs no other
    denominator.
    """
    logits = logits.float()
    top = logits.detach().topk(3, dim=1).values
    return margin(logits, t) / (top[:, 0] - top[:, 2]).clamp(min=1e-6)


def cosine_to_onehot(logits, t):
    p = logits.float().softmax(1)
    return p.gather(1, _safe(t)[:, None])[:, 0] / p.norm(dim=1).clamp(min=1e-12)


TERMS: dict[str, Callable] = {"ce": cross_entropy, "masked_ce": cross_entropy,
                              "segpgd": cross_entropy, "cospgd": cross_entropy,
                              "js": jensen_shannon, "margin": margin, "dlr": dlr}
LOSSES = tuple(TERMS)


def model_loss(logits: torch.Tensor, labels: torch.Tensor, area: torch.Tensor,
               goal: torch.Tensor | None = None, keep: torch.Tensor | None = None,
               keep_weight: float = 0.0, ce_max: float | None = None, loss: str = "ce",
               step: int = 0, steps: int = 1, kappa: float = 0.0) -> torch.Tensor:
    """(B,) per-image loss one model contributes (to minimise).

    Args:
        logits: (B, C, H, W). labels: (B, H, W) int64, 255 = ignore. area: (B, H, W) bool (A).
        goal: targeted goal class per pixel (None = untargeted). keep: the clean prediction,
            kept outside A with weight ``keep_weight`` (less collateral).
        ce_max: cap of the untargeted per-pixel cross-entropy of ``loss=ce`` (None = unbounded).
        loss: name in ``LOSSES``. step, steps: where the attack is (``segpgd``'s lambda_t).
        kappa: the cap of ``margin`` and ``dlr`` on the done side: a pixel pulls until it is kappa
            past the boundary, so a barely fooled pixel is not left where the next step flips it back.
    """
    targeted = goal is not None
    t = goal if targeted else labels
    in_area = area & (labels != IGNORE_INDEX)
    ell = TERMS[loss](logits, t)
    if loss in ("margin", "dlr"):  # a pixel kappa past the boundary stops pulling
        ell = ell.clamp(min=-kappa) if targeted else ell.clamp(max=kappa)
    elif loss == "ce" and ce_max is not None and not targeted:
        ell = ell.clamp(max=ce_max)
    if loss in ("masked_ce", "segpgd"):
        pred = logits.argmax(1)
        done = pred == t if targeted else pred != t
        lam = 0.0 if loss == "masked_ce" else step / (2 * max(steps, 1))
        ell = ell * torch.where(done, lam, 1.0 - lam)
    elif loss == "cospgd":
        cos = cosine_to_onehot(logits, t).detach()
        ell = ell * ((1 - cos) if targeted else cos)
    value = per_image_mean(ell, in_area)
    value = value if targeted else -value
    if keep_weight > 0 and keep is not None:
        value = value + keep_weight * per_image_mean(cross_entropy(logits, keep), ~area & (labels != IGNORE_INDEX))
    return value

