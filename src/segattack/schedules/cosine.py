"""``cosine``: from 1 to 0 along half a cosine over the steps."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .base import SCHEDULES, Schedule


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class Cosine(Schedule):
    def factor(self, step, steps):
        return 0.5 * (1 + math.cos(math.pi * step / steps))
