"""Training order fixed by (seed, epoch), so that a resumed run shuffles each epoch as an uninterrupted one."""

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A random permutation of ``range(n)`` per epoch, drawn from a generator seeded with ``seed + epoch``.

    ``torch.utils.data.RandomSampler`` draws from the global generator, whose state a checkpoint does not
    hold, so a run resumed from ``last.ckpt`` would see other orders than an uninterrupted one. Lightning
    calls :meth:`set_epoch` at the start of every epoch (under DDP its distributed wrapper shuffles too).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())
