"""Step-size schedules of an attack (``attack.schedule`` names one of ``SCHEDULES``; one file
each): the multiplier of the optimiser's step size at ``step`` of ``steps``, the same in the
per-image loop and the universal fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..registry import Registry

SCHEDULES = Registry("attack.schedule")


@dataclass(frozen=True)
class Schedule:
    """Base: ``factor(step, steps)``; settings, if any, are the dataclass's fields."""

    name: ClassVar[str] = ""

    def factor(self, step: int, steps: int) -> float:
        raise NotImplementedError
