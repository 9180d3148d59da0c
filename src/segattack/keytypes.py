"""Config key types and cross-key errors shared by the schema (``segattack.schema``) and the
parts that declare their own keys (regions, losses' settings): a leaf both import.

Counts and sizes are strict integers (a bool or a float is refused, not rounded).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything keeps to


def _seed(value):
    if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= SEED_MAX:
        raise ValueError(f"expected an integer in [0, {SEED_MAX}] (numpy's seed range)")
    return value


Seed = Annotated[int, Field(strict=True), BeforeValidator(_seed)]


class KeyLine(ValueError):
    """A check across keys: its message is a whole line relative to the model that raised it
    (``scale=[2.0, 1.0]: expected ...``); the formatter puts the model's own key in front."""


def as_typed(value) -> str:
    """A value the way it is typed on the command line (``null``, ``true``, ``[1,2]``); strings quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(as_typed(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{as_typed(v)}" for k, v in value.items()) + "}"
    return repr(value)


def exactly(n: int, item, example: str):
    """A list of exactly ``n`` values of type ``item``; a wrong length says ``expected n values``."""

    def length(value):
        if isinstance(value, list) and len(value) != n:
            raise ValueError(f"expected {n} values, e.g. {example}")
        return value

    return Annotated[list[item], BeforeValidator(length)]


Size = exactly(2, PositiveInt, "[120,160] (h, w in pixels)")


class Strict(BaseModel):
    """Base: strict types, unknown keys refused, Hydra's ``_target_``/``_partial_`` by name."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)
