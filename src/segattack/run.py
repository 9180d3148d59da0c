"""Run plumbing shared by both entry points: threads, seed, logger, checkpoint resume, safe loading.

Checkpoints are Lightning pickles: each one is read with ``weights_only=True`` first, so a file
that would run code stops the run instead (docs/design.md, "Safe loading").
"""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from .errors import WeightsError


def prepare_run(cfg, verbose_seed: bool = True) -> None:
    """Pin the torch threads (``torch_threads``) and seed every generator (``seed``)."""
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg.torch_threads))
    L.seed_everything(cfg.seed, workers=True, verbose=verbose_seed)


def build_logger(cfg, name: str | None):
    """The configured Lightning logger (``logger`` group), or False for ``logger=none``."""
    return instantiate(cfg.logger, name=name) if cfg.get("logger") else False


def load_torch_file(path: str | Path):
    """Load a ``.pt``/``.ckpt`` without running code from it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any refusal becomes one user-facing message
        raise WeightsError(f"{path}: refused to load ({type(err).__name__}: "
                           f"{str(err).splitlines()[0]}); only plain tensors are accepted") from None


def resume_checkpoint(folder: str | Path) -> str | None:
    """The checkpoint ``ckpt_path="last"`` would resume from in ``folder``, checked first.

    Lightning unpickles the file itself: it is first read with ``load_torch_file``, so a file that
    would run code, or a truncated one, stops the run with a ``WeightsError`` naming it. Returns
    the newest ``last*.ckpt`` (as Lightning picks it) or None where there is none.
    """
    found = sorted(Path(folder).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    load_torch_file(found[-1])
    return str(found[-1])


def safe_load_kwargs(trainer) -> dict:
    """``weights_only=True`` for ``trainer.fit(ckpt_path=...)`` where Lightning takes it (>= 2.6).

    Explicit, so that ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off (torch obeys that
    variable only where the caller left ``weights_only`` unset).
    """
    return {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
