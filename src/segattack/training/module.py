"""SegmentationModule: the LightningModule that trains a baseline segmentation network."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..labels import IGNORE_INDEX, colorize
from ..metrics.iou import SegmentationIoU
from .adversarial import AdversarialTraining


def poly_lambda(total_steps: int, power: float = 0.9) -> Callable[[int], float]:
    return lambda step: max(0.0, 1.0 - step / max(1, total_steps)) ** power


def cosine_lambda(total_steps: int) -> Callable[[int], float]:
    return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


SCHEDULES = {"poly": poly_lambda, "cosine": cosine_lambda}


class SegmentationModule(L.LightningModule):
    """Cross-entropy training (ignore 255, optional class weights) with val IoU per class.

    Args:
        model: a ``NormalizedModel`` (takes [0, 1] images, returns logits).
        class_names: one name per class (for the per-class IoU logs).
        optimizer: a partial optimiser, called with the parameters (Hydra ``_partial_: true``).
        schedule: ``"poly"`` (power 0.9), ``"cosine"`` or ``None``; stepped every batch.
        class_weights: (C,) loss weights or None.
        palette: RGB colours per class, for the logged overlays.
        adversarial: adversarial training (``training/adversarial.py``): a share of each batch
            replaced by adversarial images, and robust validation on the first val images.
    """

    def __init__(self, model: nn.Module, class_names: Sequence[str],
                 optimizer: Callable[..., torch.optim.Optimizer],
                 schedule: str | None = "poly", class_weights: torch.Tensor | None = None,
                 palette: Sequence[Sequence[int]] | None = None, log_images: int = 2,
                 adversarial: AdversarialTraining | None = None):
        super().__init__()
        if schedule not in (None, *SCHEDULES):
            raise ConfigError(f"schedule={schedule!r}: expected one of {sorted(SCHEDULES)} or null")
        self.model = model
        self.class_names = list(class_names)
        self.palette = palette
        self.optimizer_factory = optimizer
        self.schedule = schedule
        self.log_images = log_images
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.val_iou = SegmentationIoU(len(self.class_names), IGNORE_INDEX)
        self.adversarial = adversarial
        self.robust_iou = SegmentationIoU(len(self.class_names), IGNORE_INDEX)
        self.val_seen = 0  # val images scored this epoch (robust validation takes the first N)

    def forward(self, x):
        return self.model(x)

    def on_fit_start(self):
        # Lightning keeps the mode a module arrives in; weights loaded for fine-tuning come in eval().
        self.model.train()

    def _loss(self, logits, y):
        w = self.class_weights.to(logits.dtype) if self.class_weights is not None else None
        return F.cross_entropy(logits, y, weight=w, ignore_index=IGNORE_INDEX)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.adversarial is not None:
            x = self.adversarial.mix(self.model, x, y)
        loss = self._loss(self(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at epoch {self.current_epoch}, "
                                     f"step {self.global_step}: stopping instead of training on garbage")
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self._loss(logits, y), batch_size=x.shape[0])
        pred = logits.argmax(1)
        self.val_iou.update(pred, y)
        if batch_idx == 0 and self.log_images:
            self._log_overlays(x[: self.log_images], pred[: self.log_images], y[: self.log_images])
        self._robust_validation(x, y)

    def on_validation_epoch_start(self):
        self.val_seen = 0

    def _robust_validation(self, x, y):
        """Adversarial training: the first ``val_images`` val images, attacked (val/robust_*)."""
        adv = self.adversarial
        n = min(x.shape[0], adv.val_images - self.val_seen) if adv is not None else 0
        self.val_seen += x.shape[0]
        if n <= 0 or self.trainer.sanity_checking:
            return
        x_adv = adv.val_attack.craft(self.model, x[:n], y[:n])
        with torch.no_grad():
            self.robust_iou.update(self(x_adv).argmax(1), y[:n])

    def on_validation_epoch_end(self):
        out = self.val_iou.compute()
        self.val_iou.reset()
        self.log("val/miou", out["miou"], prog_bar=True)
        if self.adversarial is not None and self.adversarial.val_images and not self.trainer.sanity_checking:
            robust = self.robust_iou.compute()
            self.robust_iou.reset()
            self.log("val/robust_miou", robust["miou"], prog_bar=True)
            self.log("val/robust_acc", robust["accuracy"])
        per_class = out["per_class"].tolist()
        for name, iou in zip(self.class_names, per_class):
            if not math.isnan(iou):
                self.log(f"val_iou/{name}", iou)
        log_table = getattr(self.logger, "log_table", None)  # W&B: one table per validation
        if log_table is not None and not self.trainer.sanity_checking:
            log_table(key="val/per_class_iou", columns=["class", "iou"],
                      data=[[n, v] for n, v in zip(self.class_names, per_class)])

    def _log_overlays(self, x, pred, y):
        """Image | ground truth | prediction, to loggers that take images (W&B)."""
        log_image = getattr(self.logger, "log_image", None)
        if log_image is None or self.palette is None or self.trainer.sanity_checking:
            return
        rows = [torch.cat([img.permute(1, 2, 0).float(), colorize(t, self.palette), colorize(p, self.palette)], 1)
                for img, t, p in zip(x.cpu(), y.cpu(), pred.cpu())]
        log_image(key="val/overlays", images=[r.numpy() for r in rows], step=self.global_step,
                  caption=["image | ground truth | prediction"] * len(rows))

    # Lightning's checkpoints hold no random state: without these two hooks a resumed run draws
    # other shuffles and dropout masks than an uninterrupted one (docs/design.md, "Resuming").
    def on_save_checkpoint(self, checkpoint):
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if self.adversarial is not None:  # the inner attack's random starts
            checkpoint["attack_generator_states"] = self.adversarial.generator_states()

    def on_load_checkpoint(self, checkpoint):
        if "torch_rng_state" in checkpoint:  # checkpoints from before this hook resume as before
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if self.adversarial is not None and "attack_generator_states" in checkpoint:
            self.adversarial.set_generator_states(checkpoint["attack_generator_states"])

    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.model.parameters())
        if self.schedule is None:
            return opt
        total = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.LambdaLR(opt, SCHEDULES[self.schedule](int(total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
