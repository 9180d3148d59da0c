"""segattack: adversarial attacks on semantic segmentation networks.

The Python API (``segattack.Attack``, ``segattack.AttackResult``; ``segattack/api.py``) is
imported on first use, so the entry points start without it.
"""

__all__ = ["Attack", "AttackResult"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'segattack' has no attribute {name!r}")
