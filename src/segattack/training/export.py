"""Callback: export the best (or the latest) model to ``<name>.safetensors`` with its metadata."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L

from ..errors import ConfigError
from ..files.weights import save_weights
from .ema import EMAWeights

EXPORT_MODES = ("best", "last")


class ExportBestWeights(L.Callback):
    """After each validation, write the weights atomically: the best so far, or the latest.

    ``mode="best"`` keeps the epoch with the highest ``monitor``; ``mode="last"`` keeps the
    latest validated epoch, so at the end of the schedule the file is the fixed recipe's final
    model rather than the luckiest epoch of a noisy val curve. Either way the file is usable
    whenever the run is killed, and its metadata holds ``export`` (the mode), ``epoch``,
    ``max_epochs`` and that epoch's ``val_miou``. ``best`` is tracked in both modes.

    Args:
        path: target ``.safetensors`` file.
        metadata: architecture, num_classes, class_names, input_size, dataset, ...
        monitor: logged metric to maximise (``val/miou``).
        mode: ``"best"`` or ``"last"``.
        ema: the run's weight average, if any: its weights are the ones validated and written.
    """

    # The class keeps its name: Lightning keys callback state by it, so checkpoints written
    # before ``mode`` existed resume with their ``best``.
    def __init__(self, path: str | Path, metadata: dict, monitor: str = "val/miou", mode: str = "best",
                 ema: EMAWeights | None = None):
        if mode not in EXPORT_MODES:
            raise ConfigError(f"export={mode!r}: expected one of {list(EXPORT_MODES)}")
        self.path = Path(path)
        self.metadata = metadata
        self.monitor = monitor
        self.mode = mode
        self.ema = ema
        self.best = -math.inf
        self.exported: dict | None = None  # epoch and val_miou of the file written last

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        improved = value > self.best
        self.best = max(self.best, value)
        if self.mode == "best" and not improved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        net = self.ema.average_of(pl_module) if self.ema is not None else pl_module.model
        robust = {f"val_robust_{k}": float(trainer.callback_metrics[f"val/robust_{k}"])
                  for k in ("miou", "acc") if f"val/robust_{k}" in trainer.callback_metrics}
        save_weights(net, self.path, **self.metadata, val_miou=value, **robust,
                     epoch=trainer.current_epoch, global_step=trainer.global_step,
                     export=self.mode, max_epochs=trainer.max_epochs)
        self.exported = {"epoch": trainer.current_epoch, "val_miou": value}

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state_dict):
        self.best = state_dict["best"]
