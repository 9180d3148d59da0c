"""One registry for architectures: ``{name: class}`` and ``create_model(name, num_classes)``."""

from __future__ import annotations

from torch import nn

MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str):
    """Class decorator: make an architecture buildable by name."""

    def add(cls):
        if name in MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        MODELS[name] = cls
        return cls

    return add


def create_model(name: str, num_classes: int) -> nn.Module:
    """Build an architecture by its registered name (randomly initialised)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    return MODELS[name](num_classes)
