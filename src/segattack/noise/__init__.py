"""Noise functions ``delta = eps * f(w)``, one file each (``base.py`` says what they share)."""

from ..registry import import_modules
from .base import NOISE_FUNCTIONS, NoiseFunction

import_modules(__name__, __path__)

__all__ = ["NOISE_FUNCTIONS", "NoiseFunction"]
