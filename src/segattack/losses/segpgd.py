"""``segpgd``: SegPGD's cross-entropy (Gu et al. 2022), weight ``1 - lambda_t`` on pixels not
yet done and ``lambda_t`` on done ones, ``lambda_t = t / 2T``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LOSSES, Loss, cross_entropy


@LOSSES.register("segpgd")
@dataclass(frozen=True)
class SegPGD(Loss):
    def term(self, logits, inputs):
        ell = cross_entropy(logits, inputs.target)
        lam = inputs.step / (2 * max(inputs.steps, 1))
        return ell * torch.where(inputs.done(logits), lam, 1.0 - lam)
