"""Architectures (one file each), their registry, the normalising wrapper and weight files."""

from . import enet, erfnet  # noqa: F401  (registers the architectures)
from .registry import MODELS, create_model, register_model
from .wrapper import NormalizedModel

__all__ = ["MODELS", "create_model", "register_model", "NormalizedModel"]
