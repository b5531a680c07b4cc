"""FOD's training batches served from backbone features computed once (no image decoding per epoch)."""

from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset

from fod_lightning.data.samples import Sample


@dataclass
class FeatureBatch:
    """Training batch of cached features: one pooled backbone map (B, C, h, w) per stage, and no pixels."""

    label: torch.Tensor  # (B,) int64
    path: list[str]
    defect_type: list[str]
    features: list[torch.Tensor]

    def __len__(self) -> int:
        return self.label.shape[0]

    def pin_memory(self) -> "FeatureBatch":
        """Page-locked copy (DataLoader(pin_memory=True)) for asynchronous host-to-GPU copies."""
        return replace(self, label=self.label.pin_memory(), features=[f.pin_memory() for f in self.features])


class FeatureDataset(Dataset):
    """Per-stage feature maps of a split's images, in the split's order, fetched a batch at a time.

    Args:
        maps: one (N, C, h, w) tensor per stage.
        samples: the N samples the maps belong to (labels and paths of the batches).
    """

    def __init__(self, maps: list[torch.Tensor], samples: list[Sample]) -> None:
        if any(m.shape[0] != len(samples) for m in maps):
            raise ValueError(f"feature maps of {[m.shape[0] for m in maps]} images for {len(samples)} samples")
        self.maps, self.samples = maps, samples
        self.labels = torch.tensor([s.label for s in samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> FeatureBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> FeatureBatch:
        """One gather per stage for a whole batch (DataLoader calls this with the batch's indices)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return FeatureBatch(
            label=self.labels[idx],
            path=[str(self.samples[i].image_path) for i in indices],
            defect_type=[self.samples[i].defect_type for i in indices],
            features=[m[idx] for m in self.maps],
        )
