"""The progress bars of an attack run.

Evaluation (``Trainer.test``; per-image runs optimise there too): images done / total, time per
image, steps per image, and the running asr of every attacked model and ``asr_all`` (logged by
``PerturbationModule.test_step``). Universal fit: optimiser steps done / total with the loss and
each attacked model's asr on the step's batch.
"""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


def _fmt(value) -> str:
    return f"{100 * float(value):.1f}%"


class AttackProgressBar(TQDMProgressBar):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._images = 0

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the logger's run id: nothing to read while attacking
        if "train/loss" in metrics:
            metrics["loss"] = metrics.pop("train/loss")
        return {k: _fmt(v) if k.startswith("asr") else v for k, v in metrics.items()}

    # --- universal fit: one bar over attack.steps optimiser steps, across epochs ----------------
    def init_train_tqdm(self):
        return self._bar("fit", "step")

    def on_train_epoch_start(self, trainer, pl_module):
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:  # first epoch (or a resumed run): set up once
            bar.reset(total=trainer.max_steps if trainer.max_steps > 0 else None)
            bar.n = bar.initial = trainer.global_step
        bar.set_description(f"fit {pl_module.spec.method} (universal)")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module):  # the bar spans epochs: nothing to close
        pass

    # --- evaluation: one bar over images ---------------------------------------------------------
    # Seconds per image rather than images per second: an attacked image takes seconds.
    TEST_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} img [{elapsed}<{remaining}, {rate_inv_fmt}{postfix}]"

    def init_test_tqdm(self):
        return self._bar("evaluate", "img", self.TEST_FORMAT)

    def on_test_start(self, trainer, pl_module):
        super().on_test_start(trainer, pl_module)
        bar = self.test_progress_bar
        spec = pl_module.spec
        method = f"{spec.method} {spec.eps * 255:.3g}/255"
        if spec.mode == "per_image":  # at most: early stop may end a batch sooner
            steps = spec.steps
            what = f"attack {method}, {steps} step{'s' * (steps != 1)}/img"
            bar.set_description(what, refresh=False)
            if spec.members:  # which member is running now
                pl_module.on_member = lambda label: bar.set_description(f"{what} [{label}]")
        else:
            bar.set_description(f"evaluate {method} (universal)", refresh=False)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self.has_dataloader_changed(dataloader_idx):
            self._images = 0
            self.test_progress_bar.reset(total=self._num_images(trainer, dataloader_idx))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        bar = self.test_progress_bar
        if bar is None or bar.disable:
            return
        self._images += len(batch[0])
        bar.n = self._images
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        bar.refresh()

    def _bar(self, desc: str, unit: str, bar_format: str | None = None) -> Tqdm:
        # stderr, not Lightning's stdout: stdout is left to the results (`> results.txt`).
        return Tqdm(desc=desc, unit=unit, position=2 * self.process_position, disable=self.is_disabled,
                    leave=True, dynamic_ncols=True, file=sys.stderr, smoothing=0,
                    bar_format=bar_format or self.BAR_FORMAT)

    @staticmethod
    def _num_images(trainer, dataloader_idx: int):
        """Images this process evaluates (its DistributedSampler's share under DDP)."""
        loaders = trainer.test_dataloaders
        loader = loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders
        try:
            return len(loader.sampler)
        except (AttributeError, TypeError):
            return None
