"""A memory of the normal training patches per stage, and each test patch's distance to its nearest one."""

import torch

from fod_lightning.models.base import FittedBuffers
from fod_lightning.models.memory_bank import coreset, nearest_neighbours
from fod_lightning.utils.progress import Progress


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
    def is_set(self) -> bool:
        return all(getattr(self, f"stage{i}").numel() > 0 for i in range(self.n_stages))

    def set(self, maps: list[torch.Tensor], seed: int = 0) -> None:
        """maps: per stage the pooled maps (N, C, h, w) of the training images."""
        generator = torch.Generator().manual_seed(seed)
        for i, m in enumerate(maps):
            patches = m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]).float()
            ratio = self.kept_fraction(len(patches))
            if ratio < 1.0:
                progress = Progress(f"FOD memory: stage {i} coreset (greedy k-center selections)",
                                    int(len(patches) * ratio))  # fmt: skip
                patches = patches[coreset(patches, ratio, 0.9, generator, progress=progress.step_to)]
                progress.finish()
            setattr(self, f"stage{i}", patches.contiguous().to(getattr(self, f"stage{i}").device))

    def kept_fraction(self, n: int) -> float:
        """The fraction of a stage's ``n`` training patches kept: ``ratio``, lowered to ``max_patches / n``."""
        if self.max_patches is not None and n * self.ratio > self.max_patches:
            return self.max_patches / n
        return self.ratio

    def distances(self, stage: int, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L, C) -> the distance of each to its nearest memory patch of the stage, (B, L)."""
        bank = getattr(self, f"stage{stage}")
        if bank.numel() == 0:
            raise RuntimeError("the patch memory is empty: fit the model, or load a checkpoint that holds it")
        flat = tokens.reshape(-1, tokens.shape[-1]).to(bank.dtype)
        distances, _ = nearest_neighbours(flat, bank, 1, self.chunk_queries)
        return distances.view(tokens.shape[0], tokens.shape[1]).to(tokens.dtype)
