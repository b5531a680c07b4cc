"""A memory of the normal training patches per stage, and each test patch's distance to its nearest one."""

import logging

import torch

from fod_lightning.models.base import FittedBuffers
from fod_lightning.models.memory_bank import coreset_size, logged_coreset, nearest_neighbours

log = logging.getLogger(__name__)


class PatchMemory(FittedBuffers):
    """Per stage, pooled backbone patches (M, C) of the normal training images (all, or a greedy coreset of them).

    Args:
        n_stages: stages of the model.
        ratio: the fraction of the training patches kept (1.0: all; less: the k-center coreset).
        max_patches: at most this many patches per stage (the k-center coreset of that many, when the ``ratio`` would
            keep more): the memory and the scoring time stop growing with the training set. None: no bound.
    """

    def __init__(self, n_stages: int, ratio: float = 1.0, max_patches: int | None = None) -> None:
        super().__init__()
        self.n_stages, self.ratio, self.max_patches = n_stages, ratio, max_patches
        self.chunk_queries = True  # off while exporting: the number of queries follows the (dynamic) batch
        for i in range(n_stages):
            self.register_buffer(f"stage{i}", torch.empty(0))

    @property
    def banks(self) -> list[torch.Tensor]:
        """The stages' patches, each (M, C) (empty before :meth:`set`)."""
        return [getattr(self, f"stage{i}") for i in range(self.n_stages)]

    @property
    def is_set(self) -> bool:
        return all(bank.numel() > 0 for bank in self.banks)

    def set(self, maps: list[torch.Tensor], seed: int = 0) -> None:
        """maps: per stage the pooled maps (N, C, h, w) of the training images."""
        generator = torch.Generator().manual_seed(seed)
        for i, m in enumerate(maps):
            patches = m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]).float()
            k = self.kept(len(patches))
            if k < len(patches):
                what = f"FOD memory: stage {i} coreset (greedy k-center selections)"
                patches = patches[logged_coreset(what, patches, k, 0.9, generator)]
            setattr(self, f"stage{i}", patches.contiguous().to(getattr(self, f"stage{i}").device))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        sizes = [len(bank) for bank in self.banks]
        if self.max_patches is not None and max(sizes, default=0) > self.max_patches:
            log.warning("the patch memory loaded holds %s patches per stage, more than model.net.memory_max_patches=%d "
                        "(fitted without that bound): it is used as it is; fit afresh to bound it",
                        " / ".join(map(str, sizes)), self.max_patches)  # fmt: skip

    def kept(self, n: int) -> int:
        """How many of a stage's ``n`` training patches the memory keeps: the ``ratio``'s, at most ``max_patches``."""
        k = n if self.ratio >= 1.0 else coreset_size(n, self.ratio, "model.net.memory_ratio")
        return k if self.max_patches is None else min(k, self.max_patches)

    def distances(self, stage: int, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L, C) -> the distance of each to its nearest memory patch of the stage, (B, L)."""
        bank = getattr(self, f"stage{stage}")
        if bank.numel() == 0:
            raise RuntimeError("the patch memory is empty: fit the model, or load a checkpoint that holds it")
        flat = tokens.reshape(-1, tokens.shape[-1]).to(bank.dtype)
        distances, _ = nearest_neighbours(flat, bank, 1, self.chunk_queries)
        return distances.view(tokens.shape[0], tokens.shape[1]).to(tokens.dtype)
