"""Callback: export the best model so far to ``<name>.safetensors`` with its metadata."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L

from ..files.weights import save_weights


class ExportBestWeights(L.Callback):
    """After each validation, if ``monitor`` improved, write the weights atomically.

    The file is always the best model so far, so a run killed at any time leaves usable weights.

    Args:
        path: target ``.safetensors`` file.
        metadata: architecture, num_classes, class_names, input_size, dataset, ...
        monitor: logged metric to maximise (``val/miou``).
    """

    def __init__(self, path: str | Path, metadata: dict, monitor: str = "val/miou"):
        self.path = Path(path)
        self.metadata = metadata
        self.monitor = monitor
        self.best = -math.inf

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or float(value) <= self.best:
            return
        self.best = float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_weights(pl_module.model, self.path, **self.metadata, val_miou=self.best,
                     epoch=trainer.current_epoch, global_step=trainer.global_step)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state_dict):
        self.best = state_dict["best"]
