"""The evaluated split as the evaluation needs it: each image with its index, and under DDP every
image on exactly one process.

Lightning's own ``DistributedSampler`` pads a split whose size is not a multiple of the process
count by repeating images, which then count twice in the synced metrics. Lightning keeps a
sampler that already is a ``DistributedSampler``, so this one takes its place.
"""

from __future__ import annotations

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


class Indexed(Dataset):
    """``dataset[i] + (i,)``: samples with their index in the split (placements, per-image rows)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return (*self.dataset[index], index)


def shard(size: int, rank: int, world: int) -> range:
    """The contiguous share of ``range(size)`` of process ``rank`` of ``world``: the first
    ``size % world`` processes take one image more, nothing repeats (a process may get none)."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


class UnpaddedDistributedSampler(DistributedSampler):
    """In-order indices of this process's contiguous share of the split, without padding.

    The world is read when iterating (the process group starts inside ``trainer.test``); one
    process takes the whole split. Contiguous shares keep the first images on process 0, so the
    figures are those of a single-process run.
    """

    def __init__(self, dataset: Dataset):  # no super().__init__: it needs the process group now
        self.dataset = dataset
        self.epoch = 0
        self.shuffle = False
        self.drop_last = False

    def _world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    @property
    def rank(self) -> int:
        return self._world()[0]

    @property
    def num_replicas(self) -> int:
        return self._world()[1]

    @property
    def indices(self) -> range:
        rank, world = self._world()
        return shard(len(self.dataset), rank, world)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
