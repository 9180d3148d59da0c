"""Run plumbing shared by both entry points: threads, seed, logger, checkpoint resume, safe loading.

Checkpoints are Lightning pickles: each one is read with ``weights_only=True`` first, so a file
that would run code stops the run instead (docs/design.md, "Safe loading").
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate

from .errors import WeightsError


def check_device(cfg) -> None:
    """``trainer=gpu`` on a machine without CUDA stops before any data or weights load."""
    accelerator = (cfg.get("trainer") or {}).get("accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        from .errors import ConfigError

        raise ConfigError(f"trainer.accelerator={accelerator}: no CUDA device; use trainer=cpu")


def prepare_run(cfg, verbose_seed: bool = True) -> None:
    """Check the device, pin the torch threads (``torch_threads``) and seed every generator (``seed``)."""
    check_device(cfg)
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
        raise WeightsError(f"{path}: refused to load ({type(err).__name__}: {torch_reason(err)}); "
                           "only plain tensors are accepted") from None


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def torch_reason(err: Exception) -> str:
    """The line of torch's error that says what is wrong with the file: without its advice to load
    with ``weights_only=False`` (that would run the file's code) and without terminal codes."""
    lines = [ANSI.sub("", line).strip() for line in str(err).splitlines()]
    useful = [line for line in lines if line and "weights_only" not in line
              and not line.startswith(("Weights only load failed", "Check the documentation", "("))]
    reason = (useful or ["unreadable"])[0]
    return reason.split(". ")[0].rstrip(".")


def resume_checkpoint(folder: str | Path, module=None) -> str | None:
    """The checkpoint ``ckpt_path="last"`` would resume from in ``folder``, checked first.

    Lightning unpickles the file itself: it is first read with ``load_torch_file``, so a file that
    would run code, or a truncated one, stops the run with a ``WeightsError`` naming it. Returns
    the newest ``last*.ckpt`` (as Lightning picks it) or None where there is none. With
    ``module``, its ``state_dict`` must fit the module (names, shapes, dtypes, finite values).
    """
    found = sorted(Path(folder).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    ckpt = load_torch_file(found[-1])
    if module is not None:
        from .files.checkpoint import check_fits

        check_fits(found[-1], ckpt, module)
    return str(found[-1])


def safe_load_kwargs(trainer) -> dict:
    """``weights_only=True`` for ``trainer.fit(ckpt_path=...)`` where Lightning takes it (>= 2.6).

    Explicit, so that ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off (torch obeys that
    variable only where the caller left ``weights_only`` unset).
    """
    return {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
