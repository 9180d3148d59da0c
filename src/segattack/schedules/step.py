"""``step``: decay x0.1 at 50% and again at 75% of the steps."""

from __future__ import annotations

from dataclasses import dataclass

from .base import SCHEDULES, Schedule


@SCHEDULES.register("step")
@dataclass(frozen=True)
class StepDecay(Schedule):
    def factor(self, step, steps):
        return 0.1 ** ((step >= steps // 2) + (step >= (3 * steps) // 4))
