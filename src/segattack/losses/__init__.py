"""Attack losses, one file each (``attack.loss`` names one of ``LOSSES``; ``base.py`` says what
they share). Every module of this package is imported here, so a new loss is its own file."""

from ..registry import import_modules
from .base import LOSSES, Loss, LossInputs, cross_entropy, per_image_mean

import_modules(__name__, __path__)

__all__ = ["LOSSES", "Loss", "LossInputs", "cross_entropy", "per_image_mean"]
