"""``sigmoid``: ``delta = eps * (2 sigmoid(w) - 1)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import NOISE_FUNCTIONS, SAFE, NoiseFunction


@NOISE_FUNCTIONS.register("sigmoid")
@dataclass(frozen=True)
class Sigmoid(NoiseFunction):
    def f(self, w):
        return 2 * torch.sigmoid(w) - 1

    def inverse(self, u):
        return torch.logit((u.clamp(-SAFE, SAFE) + 1) / 2)
