"""Typed batch container shared by every datamodule."""

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """A collated batch of images. Lightning moves dataclasses of tensors between devices as a whole."""

    label: torch.Tensor  # (B,) int64, 1 = anomalous
    path: list[str]
    defect_type: list[str]
    image: torch.Tensor | None = None  # (B, 3, H, W) float32, normalised
    mask: torch.Tensor | None = None  # (B, H, W) uint8 in {0, 1}; all zero for normal images

    def __len__(self) -> int:
        return self.label.shape[0]

    @staticmethod
    def collate(items: list[dict]) -> "Batch":
        return Batch(
            image=torch.stack([it["image"] for it in items]),
            label=torch.tensor([it["label"] for it in items], dtype=torch.int64),
            mask=torch.stack([it["mask"] for it in items]),
            path=[it["path"] for it in items],
            defect_type=[it["defect_type"] for it in items],
        )

    def pin_memory(self) -> "Batch":
        """Page-locked copy (called by DataLoader(pin_memory=True)) for asynchronous host-to-GPU copies."""
        pinned = {f.name: getattr(self, f.name).pin_memory() for f in fields(self)
                  if isinstance(getattr(self, f.name), torch.Tensor)}  # fmt: skip
        return replace(self, **pinned)
