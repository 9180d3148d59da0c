"""``metrics.json`` and ``transfer.json``: schema checks and atomic writes (docs/design.md, "metrics.json")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..io import write_json

SCHEMA_VERSION = 1

RATE_KEYS = ("clean_miou", "adv_miou", "asr", "clean_error_in_area", "fooling_rate", "collateral")
JOINT_KEYS = ("asr_all", "asr_any")
# Added later (keys may be added, not renamed): checked when present.
OPTIONAL_RATE_KEYS = ("asr_on_correct",)
OPTIONAL_JOINT_KEYS = ("asr_all_on_correct",)
COUNT_KEYS = ("pixels_in_area", "pixels_scored", "pixels_correct_in_area")

_NAME = "metrics.json"


def _fail(key: str, problem: str, file: str = _NAME) -> None:
    raise ValueError(f"{file}: {key} {problem}")


def _get(obj: dict, key: str, prefix: str = ""):
    if key not in obj:
        _fail(prefix + key, "is missing")
    return obj[key]


def _section(obj: dict, key: str) -> dict:
    """``obj[key]``, which must exist and be an object."""
    value = _get(obj, key)
    if not isinstance(value, dict):
        _fail(key, f"must be an object, got {type(value).__name__}")
    return value


def _check_number(value, key: str, low: float | None = None, high: float | None = None,
                  file: str = _NAME) -> float:
    """``value`` must be a finite int/float (bool is not a number here) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, f"must be a number, got {type(value).__name__} {value!r}", file)
    if not math.isfinite(value):
        _fail(key, f"must be finite, got {value}", file)
    if high is not None and not low <= value <= high:
        _fail(key, f"must be in [{low:g}, {high:g}], got {value}", file)
    if low is not None and value < low:
        _fail(key, f"must be >= {low:g}, got {value}", file)
    return value


def _number(obj: dict, key: str, prefix: str = "", low: float | None = None,
            high: float | None = None) -> float:
    return _check_number(_get(obj, key, prefix), prefix + key, low, high)


def _rate(obj: dict, key: str, prefix: str = "") -> float | None:
    """A rate in [0, 1], or null: nothing to count (an empty area), never written as 0."""
    if _get(obj, key, prefix) is None:
        return None
    return _number(obj, key, prefix, 0, 1)


def _interval(obj: dict, key: str, prefix: str = "") -> None:
    """Optional ``[low, high]`` within [0, 1] with low <= high, or null."""
    value = obj.get(key)
    if value is None:
        return
    if not isinstance(value, list) or len(value) != 2:
        _fail(prefix + key, f"must be [low, high] or null, got {value!r}")
    for j, v in enumerate(value):
        _check_number(v, f"{prefix}{key}[{j}]", 0, 1)
    if value[0] > value[1]:
        _fail(prefix + key, f"must have low <= high, got {value}")


def _optional_block(obj: dict, prefix: str, rates=(), counts=(), intervals=()) -> None:
    for key in rates:
        if key in obj:
            _rate(obj, key, prefix)
    for key in counts:
        if key in obj:
            _typed(obj, key, int, prefix, "an integer")
            _number(obj, key, prefix, low=0)
    for key in intervals:
        _interval(obj, key, prefix)


def _typed(obj: dict, key: str, types: type | tuple, prefix: str = "", what: str = ""):
    value = _get(obj, key, prefix)
    # bool is an int subclass: a count or class id given as True is a bug upstream.
    if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
        _fail(prefix + key, f"must be {what}, got {type(value).__name__} {value!r}")
    return value


def validate_metrics(obj: dict) -> None:
    """Check that ``obj`` follows ``metrics.json`` schema 1; extra keys are allowed.

    Args:
        obj: the metrics dict as it will be written.

    Raises:
        ValueError: naming the first offending key path, e.g.
            ``metrics.json: per_model.enet.asr must be in [0, 1], got 1.3``.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{_NAME}: top level must be an object, got {type(obj).__name__}")
    schema = _get(obj, "schema")
    if isinstance(schema, bool) or schema != SCHEMA_VERSION:
        _fail("schema", f"must be {SCHEMA_VERSION}, got {schema!r}")

    attack = _section(obj, "attack")
    p = "attack."
    for key in ("method", "mode", "region", "area"):
        _typed(attack, key, str, p, "a string")
    _number(attack, "eps", p, low=0)
    _typed(attack, "steps", int, p, "an integer")
    _number(attack, "steps", p, low=0)
    targeted = _typed(attack, "targeted", bool, p, "true or false")
    target = _typed(attack, "target_class", (int, type(None)), p, "a class id or null")
    if target is not None:
        _number(attack, "target_class", p, low=0)
    elif targeted and not (isinstance(attack.get("target_map"), dict) and attack["target_map"]):
        _fail(p + "target_class", "must be a class id when attack.targeted is true (or "
                                  "attack.target_map a non-empty object), got null")

    sources = _get(obj, "source_models")
    if (not isinstance(sources, list) or not sources
            or not all(isinstance(s, str) for s in sources)):
        _fail("source_models", f"must be a non-empty list of model names, got {sources!r}")

    data = _section(obj, "data")
    p = "data."
    _typed(data, "name", str, p, "a string")
    # Per-image attacks fit nothing: fit_split may be null.
    _typed(data, "fit_split", (str, type(None)), p, "a split name or null")
    _typed(data, "eval_split", str, p, "a string")
    _typed(data, "num_images", int, p, "an integer")
    _number(data, "num_images", p, low=0)

    per_model = _section(obj, "per_model")
    for name, entry in per_model.items():
        if not isinstance(entry, dict):
            _fail(f"per_model.{name}", f"must be an object, got {type(entry).__name__}")
        for key in RATE_KEYS:
            _rate(entry, key, f"per_model.{name}.")
        _optional_block(entry, f"per_model.{name}.", OPTIONAL_RATE_KEYS, COUNT_KEYS, ("asr_ci95",))
    for name in sources:
        if name not in per_model:
            _fail(f"per_model.{name}", f"is missing: every source model must be evaluated "
                                       f"(per_model has {sorted(per_model)})")

    joint = _section(obj, "joint")
    for key in JOINT_KEYS:
        _rate(joint, key, "joint.")
    _optional_block(joint, "joint.", OPTIONAL_JOINT_KEYS, (), ("asr_all_ci95",))

    pert = _section(obj, "perturbation")
    for key in ("linf", "l2_mean"):
        _number(pert, key, "perturbation.", low=0)
    _number(pert, "psnr_mean", "perturbation.")

    runtime = _section(obj, "runtime")
    for key in ("seconds", "images_per_second"):
        _number(runtime, key, "runtime.", low=0)


def write_metrics(path: str | Path, obj: dict) -> Path:
    """Validate ``obj`` (see :func:`validate_metrics`) and write it atomically as JSON."""
    validate_metrics(obj)
    return write_json(path, obj)


def check_transfer(rows: Sequence[str], cols: Sequence[str], asr: Sequence[Sequence[float]]) -> None:
    """Check a transfer matrix: ``asr[i][j]`` is the rate of source set ``rows[i]`` on ``cols[j]``.

    Shape:
        asr: (len(rows), len(cols)), every value a finite rate in [0, 1].
    """
    if not rows or not cols:
        raise ValueError(f"transfer.json: rows and cols must be non-empty, got {len(rows)} rows "
                         f"and {len(cols)} cols")
    if not all(isinstance(name, str) for name in [*rows, *cols]):
        raise ValueError(f"transfer.json: rows and cols must be names, got {list(rows)} and "
                         f"{list(cols)}")
    if len(asr) != len(rows):
        raise ValueError(f"transfer.json: asr has {len(asr)} rows, expected {len(rows)} (one per "
                         f"source set {list(rows)})")
    for i, row in enumerate(asr):
        if len(row) != len(cols):
            raise ValueError(f"transfer.json: asr[{i}] has {len(row)} values, expected "
                             f"{len(cols)} (one per evaluated model {list(cols)})")
        for j, value in enumerate(row):
            _check_number(value, f"asr[{i}][{j}]", 0, 1, file="transfer.json")


def write_transfer(path: str | Path, rows: list[str], cols: list[str],
                   asr: list[list[float]]) -> Path:
    """Write ``{"rows": rows, "cols": cols, "asr": asr}`` atomically after checking the shape.

    Args:
        rows: source sets the perturbation was crafted on (e.g. ``"enet+erfnet"``).
        cols: models it was evaluated on.
        asr: success rates in [0, 1]. Shape: (len(rows), len(cols)).
    """
    check_transfer(rows, cols, asr)
    return write_json(path, {"rows": list(rows), "cols": list(cols),
                             "asr": [[float(v) for v in row] for row in asr]})
