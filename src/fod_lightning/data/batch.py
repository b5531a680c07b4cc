"""Typed batch container shared by every datamodule."""

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """A collated batch. Lightning moves dataclasses of tensors between devices as a whole."""

    image: torch.Tensor  # (B, 3, H, W) float32, normalised
    label: torch.Tensor  # (B,) int64, 1 = anomalous
    mask: torch.Tensor  # (B, H, W) uint8 in {0, 1}; all zero for normal images
    path: list[str]
    defect_type: list[str]

    def __len__(self) -> int:
        return self.image.shape[0]

    @staticmethod
    def collate(items: list[dict]) -> "Batch":
        return Batch(
            image=torch.stack([it["image"] for it in items]),
            label=torch.tensor([it["label"] for it in items], dtype=torch.int64),
            mask=torch.stack([it["mask"] for it in items]),
            path=[it["path"] for it in items],
            defect_type=[it["defect_type"] for it in items],
        )
