"""``tanh``: ``delta = eps * tanh(w)``, the paper's noise function."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import NOISE_FUNCTIONS, SAFE, NoiseFunction


@NOISE_FUNCTIONS.register("tanh")
@dataclass(frozen=True)
class Tanh(NoiseFunction):
    def f(self, w):
        return torch.tanh(w)

    def inverse(self, u):
        return torch.atanh(u.clamp(-SAFE, SAFE))
