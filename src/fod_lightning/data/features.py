"""Training batches served from precomputed backbone features (no image decoding per epoch)."""

import torch
from torch.utils.data import Dataset

from fod_lightning.data.batch import Batch
from fod_lightning.data.samples import Sample


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

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: list[int]) -> Batch:
        """One gather per stage for a whole batch (DataLoader calls this with the batch's indices)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return Batch(
            label=self.labels[idx],
            path=[str(self.samples[i].image_path) for i in indices],
            defect_type=[self.samples[i].defect_type for i in indices],
            features=[m[idx] for m in self.maps],
        )


def collate_feature_batch(batch: Batch) -> Batch:
    """The dataset already returns a collated Batch."""
    return batch
