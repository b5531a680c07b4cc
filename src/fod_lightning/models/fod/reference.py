"""Per-category reference features: the positional mean of the normal training images' tokens."""

from collections.abc import Callable, Iterable

import torch

from fod_lightning.models.base import FittedBuffers


class ReferenceFeatures(FittedBuffers):
    """Holds one mean feature map (C, h, w) per stage as persistent buffers (saved in checkpoints).

    Buffers start empty and take whatever shape a loaded state dict or :meth:`set` gives them.
    """

    def __init__(self, n_stages: int) -> None:
        super().__init__()
        self.n_stages = n_stages
        for i in range(n_stages):
            self.register_buffer(f"stage{i}", torch.empty(0))

    @property
    def is_set(self) -> bool:
        return all(self.get(i).numel() > 0 for i in range(self.n_stages))

    def get(self, stage: int) -> torch.Tensor:
        return getattr(self, f"stage{stage}")

    def set(self, maps: list[torch.Tensor]) -> None:
        """maps: one (C, h, w) tensor per stage, stored in the module's dtype (float32 unless it was cast)."""
        if len(maps) != self.n_stages:
            raise ValueError(f"expected {self.n_stages} reference maps, got {len(maps)}")
        for i, m in enumerate(maps):
            setattr(self, f"stage{i}", m.detach().to(self.get(i).device, self.get(i).dtype).clone())

    def tokens(self, stage: int) -> torch.Tensor:
        """Reference of a stage as tokens (1, L, C), row-major."""
        ref = self.get(stage)
        if ref.numel() == 0:
            raise RuntimeError(
                "reference features are not set: fit the model (they are computed from the training "
                "images at the start of fitting) or load a checkpoint that contains them"
            )
        return ref.flatten(1).transpose(0, 1)[None]


@torch.no_grad()
def mean_feature_maps(
    images: Iterable[torch.Tensor], pooled_features: Callable[[torch.Tensor], list[torch.Tensor]]
) -> list[torch.Tensor]:
    """Mean over all images of each stage's pooled feature map.

    Args:
        images: batches (B, 3, H, W) of normal training images.
        pooled_features: images -> per-stage maps (B, C, h, w).

    Returns:
        One (C, h, w) float32 map per stage (accumulated in float64).
    """
    sums: list[torch.Tensor] | None = None
    count = 0
    for batch in images:
        maps = pooled_features(batch)
        batch_sums = [m.double().sum(dim=0) for m in maps]
        sums = batch_sums if sums is None else [a + b for a, b in zip(sums, batch_sums)]
        count += batch.shape[0]
    if sums is None or count == 0:
        raise ValueError("cannot compute reference features: the training split has no images")
    return [(s / count).float() for s in sums]
