"""PatchCore and PaDiM: fitted in one pass over the normal training images (see :mod:`fod_lightning.models`)."""

from collections.abc import Iterator

import torch

from fod_lightning.models.padim import PaDiM
from fod_lightning.models.patchcore import PatchCore
from fod_lightning.training.statistics import StatisticsModule


class PatchCoreModule(StatisticsModule):
    """The memory bank: the coreset of the patch features of every normal training image."""

    net_class = PatchCore

    def fit(self, images: Iterator[torch.Tensor]) -> None:
        embeddings = [self.net.embed(batch) for batch in images]  # (B, D, h, w) each
        self.net.fit(torch.cat([e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]) for e in embeddings]))


class PaDiMModule(StatisticsModule):
    """One Gaussian per grid position, from the embeddings of every normal training image."""

    net_class = PaDiM

    def fit(self, images: Iterator[torch.Tensor]) -> None:
        self.net.fit(torch.cat([self.net.embed(batch) for batch in images]))
