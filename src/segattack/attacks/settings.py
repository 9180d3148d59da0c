"""Checks of the attack config: one-line errors that name the key and the allowed values."""

from __future__ import annotations

from fractions import Fraction

import torch

from ..errors import ConfigError
from .registry import ATTACKS

MODES = ("universal", "per_image")
LABEL_SOURCES = ("gt", "clean")


def parse_eps(value) -> float:
    """``eps`` as a float; accepts ``0.0314`` or ``"8/255"``; must lie in (0, 1]."""
    try:
        eps = float(Fraction(str(value).replace(" ", ""))) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"eps={value!r}: expected a number in (0, 1], e.g. 0.0314 or 8/255") from None
    if not 0 < eps <= 1:
        raise ConfigError(f"eps={value}: expected 0 < eps <= 1 (pixel units of [0, 1] images, e.g. 8/255)")
    return eps


def check_choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: expected one of {list(allowed)}")


def check_attack(cfg) -> None:
    """Validate the keys every attack run reads (before anything is loaded)."""
    check_choice("mode", cfg.mode, MODES)
    check_choice("attack.method", cfg.attack.method, sorted(ATTACKS))
    check_choice("attack.label_source", cfg.attack.label_source, LABEL_SOURCES)
    steps = cfg.attack.steps
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"attack.steps={steps!r}: expected an integer >= 1")
    limit = ATTACKS[cfg.attack.method].max_steps
    if limit is not None and steps > limit:
        raise ConfigError(f"attack.steps={steps}: {cfg.attack.method} takes at most {limit} step(s)")
    if not cfg.source_models:
        raise ConfigError("source_models is empty: name at least one model, e.g. source_models=[enet]")
    for key in ("keep_weight", "norm_weight"):
        if cfg.attack[key] < 0:
            raise ConfigError(f"attack.{key}={cfg.attack[key]}: expected >= 0")
    if cfg.attack.ce_max is not None and cfg.attack.ce_max <= 0:
        raise ConfigError(f"attack.ce_max={cfg.attack.ce_max}: expected > 0 or null")


def goal_map(cfg, num_classes: int) -> torch.Tensor | None:
    """Look-up label -> goal class for targeted attacks (``target_class`` or ``target_map``)."""
    if not cfg.attack.targeted:
        return None
    tc, tmap = cfg.attack.target_class, cfg.attack.target_map
    if (tc is None) == (not tmap):
        raise ConfigError("attack.targeted=true needs exactly one of attack.target_class "
                          "(e.g. 3) or attack.target_map (e.g. {9: 3})")
    lut = torch.arange(256)
    pairs = {c: tc for c in range(num_classes)} if tc is not None else dict(tmap)
    for src, dst in pairs.items():
        for key, v in (("target_class" if tc is not None else "target_map", dst),
                       ("target_map", src)):
            if not 0 <= int(v) < num_classes:
                raise ConfigError(f"attack.{key}: class {v} out of range, expected 0..{num_classes - 1}")
        lut[int(src)] = int(dst)
    return lut
