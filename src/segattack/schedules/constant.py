"""``constant``: the optimiser's own step size throughout."""

from __future__ import annotations

from dataclasses import dataclass

from .base import SCHEDULES, Schedule


@SCHEDULES.register("constant")
@dataclass(frozen=True)
class Constant(Schedule):
    def factor(self, step, steps):
        return 1.0
