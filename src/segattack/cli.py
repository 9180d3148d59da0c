"""What the entry points share: one-line errors for user mistakes, non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable

from omegaconf.errors import OmegaConfBaseException

from .errors import SegattackError


def run_task(task: Callable, cfg):
    """Run ``task(cfg)``; a user-facing error prints one line and exits with status 2."""
    try:
        return task(cfg)
    except (SegattackError, OmegaConfBaseException, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
