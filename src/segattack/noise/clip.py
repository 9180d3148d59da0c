"""``clip``: ``delta = eps * clamp(w, -1, 1)`` with ``w`` projected after each step (the classic
projected variable of PGD and the sign methods)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import NOISE_FUNCTIONS, NoiseFunction


@NOISE_FUNCTIONS.register("clip")
@dataclass(frozen=True)
class Clip(NoiseFunction):
    projected = True

    def f(self, w):
        return w.clamp(-1.0, 1.0)

    def inverse(self, u):
        return u.clone()
