"""One typed schema per entry point (pydantic), checked right after composition.

``check_attack_config(cfg)`` for ``attack.py``, ``check_train_config(cfg)`` for
``train_models.py``: each raises a ``ConfigError`` with one line per bad key (the key, the value
given, what is expected) before any weights or data load (docs/design.md, "Config schema").
"""

from .attack import check_attack_config, check_region, parse_eps
from .train import check_train_config
from .validate import as_typed

__all__ = ["as_typed", "check_attack_config", "check_region", "check_train_config", "parse_eps"]
