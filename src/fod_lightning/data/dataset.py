"""Dataset over a sample table."""

import numpy as np
import torch
from albumentations import Compose
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from fod_lightning.data.samples import DatasetLayoutError, Sample
from fod_lightning.data.transforms import read_image, read_mask


def check_samples(samples: list[Sample]) -> None:
    """Fail before training, not mid-run: every image and mask header must be readable and each
    mask must have its image's size (reads headers only, no pixels)."""
    for sample in samples:
        size = _header_size(sample.image_path, "image")
        if sample.mask_path is not None:
            check_mask_size(sample, _header_size(sample.mask_path, "mask"), size)


def check_mask_size(sample: Sample, mask_wh: tuple[int, int], image_wh: tuple[int, int]) -> None:
    """Sizes are (width, height)."""
    if mask_wh != image_wh:
        raise DatasetLayoutError(
            f"mask {sample.mask_path} is {mask_wh[0]}x{mask_wh[1]} but image {sample.image_path} is "
            f"{image_wh[0]}x{image_wh[1]}: masks must have their image's size"
        )


def _header_size(path, what: str) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetLayoutError(f"cannot read {what} {path} ({err}): replace or remove the file") from err


class AnomalyDataset(Dataset):
    """Reads image and mask of each sample and transforms them together."""

    def __init__(self, samples: list[Sample], transform: Compose) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = read_image(sample.image_path)
        if sample.mask_path is None:
            mask = np.zeros(image.shape[:2], dtype=np.uint8)
        else:
            mask = read_mask(sample.mask_path)
            check_mask_size(sample, mask.shape[::-1], image.shape[1::-1])
        out = self.transform(image=image, mask=mask)
        return {
            "image": out["image"],
            "label": sample.label,
            "mask": torch.as_tensor(out["mask"], dtype=torch.uint8),
            "path": str(sample.image_path),
            "defect_type": sample.defect_type,
        }
