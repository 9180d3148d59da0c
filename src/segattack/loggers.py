"""Lightning's WandbLogger, quiet: the logger of ``logger=wandb`` (configs/logger/wandb.yaml)."""

from __future__ import annotations

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger``, minus its ``anonymous=None`` argument to ``wandb.init``.

    Lightning always passes ``anonymous`` (None by default); wandb (0.31 here) warns "The
    anonymous setting has no effect" for any value but unset, so every run printed that warning.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
