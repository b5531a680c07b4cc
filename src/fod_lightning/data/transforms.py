"""Joint image + mask transforms (albumentations) and image reading."""

from functools import partial
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2
from PIL import Image, UnidentifiedImageError

from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("square", "shorter_side_crop")


def augmentations() -> list[A.BasicTransform]:
    """Optional training augmentations (off by default, as the authors): flips, the authors'
    commented-out 5-degree rotation, mild photometric jitter. Masks follow the geometry."""
    return [
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=5, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.05, hue=0.0, p=0.5),
    ]


def resized_shape(height: int, width: int, size: int, square: bool) -> tuple[int, int]:
    """(h, w) after the authors' torchvision ``Resize((S, S))`` (square) or ``Resize(S)`` (shorter
    side to S, the longer one truncated to int, aspect kept)."""
    if square:
        return size, size
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def _resize_crop(array: np.ndarray, size: int, square: bool, resample: int, **_) -> np.ndarray:
    h, w = resized_shape(array.shape[0], array.shape[1], size, square)
    out = np.asarray(Image.fromarray(array).resize((w, h), resample))
    # torchvision's CenterCrop offsets: int(round(d / 2)), Python's round-half-to-even.
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return out[top : top + size, left : left + size].copy()  # writable, contiguous


def authors_geometry(size: int, square: bool) -> A.Lambda:
    """The authors' resize (and centre crop), done by PIL as theirs: LANCZOS for images, NEAREST
    for masks; pixel-identical to their torchvision pipeline (tested)."""
    return A.Lambda(
        image=partial(_resize_crop, size=size, square=square, resample=Image.Resampling.LANCZOS),
        mask=partial(_resize_crop, size=size, square=square, resample=Image.Resampling.NEAREST),
        p=1.0,
    )


def build_transform(
    image_size: int,
    resize: str = "square",
    augment: bool = False,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> A.Compose:
    """Resize image and mask together, normalise the image (``mean``/``std`` of the backbone's
    weights), convert to tensors.

    Args:
        image_size: output side S (divisible by 16).
        resize: ``square`` resizes to (S, S) ignoring aspect (MVTec AD, as the authors);
            ``shorter_side_crop`` scales the shorter side to S then centre-crops S x S (BTAD, MVTec 3D-AD).
        augment: add :func:`augmentations` after the resize (training split only).
    """
    if image_size % 16:
        raise ConfigError(f"data.image_size={image_size} must be divisible by 16 (backbone stride)")
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize={resize!r} is unknown; use one of {RESIZE_MODES}")
    geometry = [authors_geometry(image_size, square=resize == "square")]
    extra = augmentations() if augment else []
    return A.Compose([*geometry, *extra, A.Normalize(tuple(mean), tuple(std)), ToTensorV2()])


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); grey images are replicated to three channels."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetLayoutError(f"cannot read image {path} ({err}): replace or remove the file") from err


def read_mask(path: Path) -> np.ndarray:
    """Binary mask uint8 (H, W) in {0, 1}: any non-zero pixel is anomalous."""
    try:
        with Image.open(path) as img:
            m = np.asarray(img.convert("L"))
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetLayoutError(f"cannot read mask {path} ({err}): replace or remove the file") from err
    return (m > 0).astype(np.uint8)
