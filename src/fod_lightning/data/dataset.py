"""Dataset over a sample table."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from albumentations import Compose
from torch.utils.data import Dataset

from fod_lightning.data.samples import DatasetLayoutError, Sample
from fod_lightning.data.transforms import read_image, read_mask


def check_samples(samples: list[Sample], workers: int | None = None) -> None:
    """Fail before training, not mid-run: every image and mask must decode (a truncated file only fails when its
    pixels are read) and each mask must have its image's size, both upright (EXIF orientation applied). Decodes
    every file once, in ``workers`` threads (default: up to 8); the first broken sample in table order is named."""
    pool = ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1))
    try:
        for _ in pool.map(_check_sample, samples):
            pass
    finally:
        pool.shutdown(cancel_futures=True)


def _check_sample(sample: Sample) -> None:
    image = read_image(sample.image_path)
    if sample.mask_path is not None:
        check_mask_size(sample, read_mask(sample.mask_path).shape[::-1], image.shape[1::-1])


def check_mask_size(sample: Sample, mask_wh: tuple[int, int], image_wh: tuple[int, int]) -> None:
    """Sizes are (width, height), both upright."""
    if mask_wh != image_wh:
        swapped = " (swapped: is one of them rotated by an EXIF orientation tag? both are read upright)"
        raise DatasetLayoutError(
            f"mask {sample.mask_path} is {mask_wh[0]}x{mask_wh[1]} but image {sample.image_path} is "
            f"{image_wh[0]}x{image_wh[1]}{swapped if mask_wh == image_wh[::-1] else ''}: masks must have their "
            "image's size"
        )


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
