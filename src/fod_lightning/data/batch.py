"""Typed batch container shared by every datamodule."""

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """A collated batch. Lightning moves dataclasses of tensors between devices as a whole.

    Image batches carry ``image`` and ``mask``; batches of cached training features carry ``features``
    (one pooled backbone map (B, C, h, w) per stage) instead, and no pixels.
    """

    label: torch.Tensor  # (B,) int64, 1 = anomalous
    path: list[str]
    defect_type: list[str]
    image: torch.Tensor | None = None  # (B, 3, H, W) float32, normalised
    mask: torch.Tensor | None = None  # (B, H, W) uint8 in {0, 1}; all zero for normal images
    features: list[torch.Tensor] | None = None  # per stage (B, C, h, w)

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
        pinned = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                pinned[f.name] = value.pin_memory()
            elif f.name == "features" and value is not None:
                pinned[f.name] = [v.pin_memory() for v in value]
        return replace(self, **pinned)
