"""A shuffled fit split that a killed universal attack resumes exactly (docs/design.md, "Resuming").

A plain ``DataLoader(shuffle=True)`` draws each epoch's order from the global RNG and cannot skip
what an interrupted epoch already used, so a resumed run saw other batches than an uninterrupted
one. Here each epoch's order comes from ``(seed, epoch)`` alone, and the checkpoint records how
many batches of the epoch were done.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(size)`` per epoch, drawn from ``(seed, epoch)``.

    Lightning calls ``set_epoch`` at each epoch start; ``resume_at(epoch, skip)`` makes the next
    pass over that epoch leave out its first ``skip`` samples.
    """

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seed = int(size), int(seed)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, skip: int) -> None:
        self.epoch = int(epoch)
        self._resume = (int(epoch), int(skip))

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        if self._resume is not None:
            epoch, skip = self._resume
            self._resume = None
            if epoch == self.epoch:
                order = order[skip:]
        return iter(order)


class ShuffleState(L.Callback):
    """Keeps the position in the fit split (epoch, batches done) in the checkpoint.

    Lightning runs ``ModelCheckpoint`` after the other callbacks, so the position saved with a
    checkpoint counts the batch it was written after. With several processes (DDP) Lightning
    shards the sampler's order, so there only the epoch's order is restored and a resumed epoch
    starts from its beginning (as with a plain DataLoader).
    """

    def __init__(self, sampler: EpochShuffle, batch_size: int):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.position = {"epoch": 0, "batches": 0}
        self.world_size = 1

    def setup(self, trainer, pl_module, stage):  # runs before a checkpoint is restored
        self.world_size = trainer.world_size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.position = {"epoch": int(trainer.current_epoch), "batches": int(batch_idx) + 1}

    def state_dict(self) -> dict:
        return dict(self.position)

    def load_state_dict(self, state_dict: dict) -> None:
        self.position = dict(state_dict)
        skip = state_dict["batches"] * self.batch_size if self.world_size == 1 else 0
        self.sampler.resume_at(state_dict["epoch"], skip)
