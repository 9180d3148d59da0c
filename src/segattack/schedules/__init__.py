"""Step-size schedules of an attack, one file each (``base.py`` says what they share)."""

from ..registry import import_modules
from .base import SCHEDULES, Schedule

import_modules(__name__, __path__)

__all__ = ["SCHEDULES", "Schedule"]
