"""An exponential moving average of the weights during training (``ema_decay=...``)."""

from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import nn


class EMAWeights(EMAWeightAveraging):
    """Lightning's EMA callback: validation, checkpoints and the end of fit use the average.

    Lightning swaps the average in for each validation and back before ``on_validation_end``,
    where the export writes its file; ``average_of`` hands the export the averaged network so
    the file holds the weights its ``val_miou`` was measured on.
    """

    def on_fit_start(self, trainer, pl_module):
        # Lightning builds the average in setup(), before the strategy moves the model to its
        # device: left there, every step would copy the weights to the host to average them
        self._average_model.to(pl_module.device)

    def average_of(self, pl_module) -> nn.Module:
        """The averaged copy of ``pl_module.model``; exists from ``setup("fit")`` on."""
        # the average lives in Lightning's AveragedModel, which wraps a copy of the LightningModule
        return self._average_model.module.model
