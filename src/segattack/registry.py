"""Named parts a config key chooses: attack losses, noise functions, step-size schedules, class
weightings. One ``Registry`` each, filled by the modules of a leaf package, so the schema (choice
lists, settings) and the runtime (the objects) read the same list and import nothing above them.

A part is a frozen dataclass whose fields are its settings, typed for the schema (e.g.
``kappa: NonNegFloat = 0.0``), or a plain function when it has none. Its settings are keys of the
config that chooses it (``attack.kappa``); the schema declares every part's settings from here,
so a new part with a setting of its own is its file, the key's line in the config and its test.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError


class Registry(dict):
    """``name -> part``; ``key`` is the config key that chooses one (``attack.loss``)."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def register(self, name: str) -> Callable:
        """Decorator: file a part under ``name`` (a dataclass gets ``name`` as a class attribute)."""

        def add(part):
            if name in self:
                raise ValueError(f"{self.key}: {name!r} is registered twice")
            if isinstance(part, type):
                part.name = name
            self[name] = part
            return part

        return add

    def choices(self) -> tuple[str, ...]:
        return tuple(sorted(self))

    def settings(self) -> dict[str, tuple[Any, Any]]:
        """``setting -> (type, default)`` over every part (parts that share a setting share its key)."""
        out = {}
        for part in self.values():
            if not dataclasses.is_dataclass(part):
                continue
            hints = typing.get_type_hints(part, include_extras=True)
            for f in dataclasses.fields(part):
                out.setdefault(f.name, (hints[f.name], f.default))
        return out

    def build(self, name: str, values: Mapping | object = None):
        """The part ``name`` with its settings taken from ``values`` (a mapping or an object with
        the settings as attributes, e.g. the checked ``attack`` config); missing ones keep their
        defaults. A function is returned as is."""
        if name not in self:
            raise ConfigError(f"{self.key}={name!r}: expected one of {list(self.choices())}")
        part = self[name]
        if not dataclasses.is_dataclass(part):
            return part
        get = values.get if isinstance(values, Mapping) else (lambda k, d: getattr(values, k, d))
        missing = object()
        kwargs = {f.name: v for f in dataclasses.fields(part)
                  if values is not None and (v := get(f.name, missing)) is not missing}
        return part(**kwargs)


def import_modules(package: str, path) -> None:
    """Import every module of ``package`` (its ``__path__``): each registers its parts."""
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
