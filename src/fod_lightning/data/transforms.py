"""Joint image + mask transforms (albumentations) and image reading."""

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2
from PIL import Image, ImageOps, UnidentifiedImageError

from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.errors import ConfigError, UserError

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


def input_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """The network input (H, W) of ``data.image_size``: S for S x S, or [H, W]."""
    if isinstance(image_size, int | float) and not isinstance(image_size, bool):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def resized_shape(height: int, width: int, shape: tuple[int, int], square: bool) -> tuple[int, int]:
    """(h, w) of an image of ``height`` x ``width`` resized for the input ``shape`` (H, W): ``square``: (H, W), the
    aspect ignored (the authors' torchvision ``Resize((S, S))``); otherwise the aspect kept and the image just
    covering (H, W), the longer side truncated to int (for S x S the authors' ``Resize(S)``: shorter side to S)."""
    target_h, target_w = shape
    if square:
        return target_h, target_w
    if target_h * width >= target_w * height:  # the height binds (for S x S: the shorter side is the height)
        return target_h, max(target_w, int(target_h * width / height))
    return max(target_h, int(target_w * height / width)), target_w


def _resize_crop(array: np.ndarray, target: tuple[int, int], square: bool, resample: int, **_) -> np.ndarray:
    # "target", not "shape": albumentations passes the array's shape as a keyword argument
    h, w = resized_shape(array.shape[0], array.shape[1], target, square)
    out = np.asarray(Image.fromarray(array).resize((w, h), resample))
    # torchvision's CenterCrop offsets: int(round(d / 2)), Python's round-half-to-even.
    top, left = crop_offsets((h, w), target)
    return out[top : top + target[0], left : left + target[1]].copy()  # writable, contiguous


def crop_offsets(resized: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the centre crop of ``shape`` from an image resized to ``resized`` (torchvision's offsets)."""
    return int(round((resized[0] - shape[0]) / 2.0)), int(round((resized[1] - shape[1]) / 2.0))


def authors_geometry(shape: tuple[int, int], square: bool) -> A.Lambda:
    """The authors' resize (and centre crop), done by PIL as theirs: LANCZOS for images, NEAREST
    for masks; pixel-identical to their torchvision pipeline (tested)."""
    return A.Lambda(
        image=partial(_resize_crop, target=shape, square=square, resample=Image.Resampling.LANCZOS),
        mask=partial(_resize_crop, target=shape, square=square, resample=Image.Resampling.NEAREST),
        p=1.0,
    )


def check_image_size(image_size: object, strides: tuple[int, ...] = ()) -> None:
    """``data.image_size``, S (S x S) or [H, W], must tile into the backbone's stages: each side a positive multiple of
    16 (the backbone's input contract) and of each stage stride."""
    tile = math.lcm(16, *(int(s) for s in strides))
    why = f" (the backbone's strides {', '.join(str(s) for s in strides)} must tile the input)" if strides else ""
    sides = list(image_size) if isinstance(image_size, Sequence) and not isinstance(image_size, str) else None
    if sides is None:
        if is_side(image_size, tile):
            return
        near = max(tile, round(image_size / tile) * tile) if isinstance(image_size, int | float) else 256
        raise ConfigError(f"data.image_size={image_size!r} must be a positive multiple of {tile}{why}, or [H, W] for "
                          f"a non-square input: e.g. data.image_size={near}")  # fmt: skip
    if len(sides) != 2:
        raise ConfigError(f"data.image_size={sides} must be one side S or two, [H, W]: e.g. data.image_size=[240,320]")
    bad = [side for side in sides if not is_side(side, tile)]
    if bad:
        near = [max(tile, round(v / tile) * tile) if isinstance(v, int | float) else 256 for v in sides]
        raise ConfigError(f"data.image_size={sides}: {', '.join(repr(v) for v in bad)} must be a positive multiple "
                          f"of {tile}{why}: e.g. data.image_size=[{near[0]},{near[1]}]")  # fmt: skip


def is_side(value: object, tile: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value % tile == 0


def build_transform(
    image_size: int | Sequence[int],
    resize: str = "square",
    augment: bool = False,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> A.Compose:
    """Resize image and mask together, normalise the image (``mean``/``std`` of the backbone's
    weights), convert to tensors.

    Args:
        image_size: output side S (S x S) or [H, W] (each divisible by 16).
        resize: ``square`` resizes to (H, W) ignoring aspect (MVTec AD, as the authors);
            ``shorter_side_crop`` keeps the aspect, scales the image to just cover (H, W) and centre-crops it (for
            S x S: the shorter side to S, as the authors' BTAD and MVTec 3D-AD).
        augment: add :func:`augmentations` after the resize (training split only).
    """
    check_image_size(image_size)
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize={resize!r} is unknown; use one of {RESIZE_MODES}")
    geometry = [authors_geometry(input_shape(image_size), square=resize == "square")]
    extra = augmentations() if augment else []
    return A.Compose([*geometry, *extra, A.Normalize(tuple(mean), tuple(std)), ToTensorV2()])


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow's modes of 16-bit grey files


def _read(path: str | Path, what: str, convert: Callable[[Image.Image, Path], np.ndarray]) -> np.ndarray:
    """Decode ``path`` upright (its EXIF orientation applied) and ``convert`` it; a file that cannot be decoded
    (empty, truncated, not an image) is the user's to fix."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            ImageOps.exif_transpose(img, in_place=True)
            return convert(img, path)
    except UserError:
        raise
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, struct.error... on broken files
        reason = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, UnidentifiedImageError):  # its message repeats the path
            reason = "an empty file" if path.stat().st_size == 0 else "not an image file Pillow can read"
        raise DatasetLayoutError(f"cannot read {what} {path} ({reason}): replace or remove the file") from err


def _to_rgb(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in SIXTEEN_BIT_MODES:  # Pillow's convert would clip at 255: scale instead
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetLayoutError(f"image {path} holds 32-bit values outside 0-65535: save it as 8- or 16-bit")
        grey = (values >> 8).astype(np.uint8)  # the high byte, as Pillow reads 16-bit RGB files
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        raise DatasetLayoutError(f"image {path} holds floating-point values: save it as an 8- or 16-bit image")
    return np.asarray(img.convert("RGB"))  # grey replicated; palette, CMYK... converted; alpha dropped


def _to_mask(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode not in ("1", "L", "F", "RGB", *SIXTEEN_BIT_MODES):
        img = img.convert("RGB")  # palette entries by their colour, CMYK as displayed; alpha dropped
    values = np.asarray(img)
    return (values.reshape(*values.shape[:2], -1) != 0).any(axis=2).astype(np.uint8)


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3), upright: the EXIF orientation is applied (as image viewers do; the authors' PIL
    pipeline ignores it). Grey images are replicated to three channels, palette, CMYK and other modes
    converted by Pillow, an alpha channel dropped (as the authors' ``convert('RGB')``); 16-bit images are scaled to
    8 bits (value >> 8, i.e. 257 * k -> k), where Pillow's ``convert`` would clip them at 255."""
    return _read(path, "image", _to_rgb)


def read_mask(path: Path) -> np.ndarray:
    """Binary mask uint8 (H, W) in {0, 1}, upright like :func:`read_image`: a pixel is anomalous when any of its
    values is non-zero (255, a class id such as VisA's, any colour; 16-bit values unscaled; alpha ignored)."""
    return _read(path, "mask", _to_mask)
