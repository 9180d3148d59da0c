"""``cospgd``: CosPGD's cross-entropy (Agnihotri et al. 2023), each pixel weighted by the cosine
of the softmax and the one-hot ``t`` (untargeted) or one minus it (targeted), detached."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LOSSES, Loss, cross_entropy, safe_target


def cosine_to_onehot(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    p = logits.float().softmax(1)
    return p.gather(1, safe_target(t)[:, None])[:, 0] / p.norm(dim=1).clamp(min=1e-12)


@LOSSES.register("cospgd")
@dataclass(frozen=True)
class CosPGD(Loss):
    def term(self, logits, inputs):
        ell = cross_entropy(logits, inputs.target)
        cos = cosine_to_onehot(logits, inputs.target).detach()
        return ell * ((1 - cos) if inputs.targeted else cos)
