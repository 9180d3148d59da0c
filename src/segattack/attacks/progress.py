"""A progress bar that also shows the logged asr while an evaluation (test loop) runs."""

from lightning.pytorch.callbacks import TQDMProgressBar


class AttackProgressBar(TQDMProgressBar):
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if self.test_progress_bar is not None:  # Lightning shows no metrics here by default
            self.test_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
