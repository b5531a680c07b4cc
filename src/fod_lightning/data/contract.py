"""The data contract: what a fitted model expects of its input, built once and carried with its weights.

A datamodule builds it from its settings (image size, resize rule, the backbone's normalisation); the model saves
it in every checkpoint; export writes it beside the ONNX model; transforms, ``predict`` and the pictures all read it.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fod_lightning.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE_MODES,
    build_transform,
    crop_offsets,
    input_shape,
    read_image,
    resized_shape,
)
from fod_lightning.errors import ConfigError

PREPROCESSING = (
    "RGB; resized with PIL LANCZOS to the input H x W (image_size: S for S x S, or [H, W]): square -> H x W (aspect "
    "ignored), shorter_side_crop -> aspect kept, just covering H x W, then centre crop H x W; scaled to [0, 1] "
    "(pixel / 255); (x - mean) / std per channel; NCHW float32"
)


@dataclass(frozen=True)
class DataContract:
    """Input of a fitted model: ``image_size`` (S for S x S, or (H, W)), the ``resize`` rule that brings an image
    there (``square``: aspect ignored, or ``shorter_side_crop``: aspect kept, centre crop), and the per-channel
    ``mean``/``std`` its backbone's weights expect."""

    image_size: int | tuple[int, int]
    resize: str = "square"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        height, width = input_shape(self.image_size)
        object.__setattr__(self, "image_size", height if height == width else (height, width))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"resize={self.resize!r} is unknown; use one of {RESIZE_MODES}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean {list(self.mean)} and std {list(self.std)} need 3 values each, std positive")

    @classmethod
    def from_dict(cls, values: dict) -> "DataContract":
        """From :meth:`to_dict` (as checkpoints and ``model.json`` hold it)."""
        return cls(**{k: values[k] for k in ("image_size", "resize", "mean", "std")})

    @property
    def shape(self) -> tuple[int, int]:
        """The input (H, W)."""
        return input_shape(self.image_size)

    def to_dict(self) -> dict:
        """Plain types (lists, not tuples): what a checkpoint loaded ``weights_only`` can hold. A square input keeps
        its one side, as before non-square inputs existed."""
        values = asdict(self)
        size = self.image_size if isinstance(self.image_size, int) else list(self.image_size)
        return values | {"image_size": size, "mean": list(self.mean), "std": list(self.std)}

    def transform(self, augment: bool = False):
        """The joint image + mask transform (albumentations) that evaluation, ``predict`` and training use."""
        return build_transform(self.image_size, self.resize, augment=augment, mean=self.mean, std=self.std)

    def preprocess(self, image: str | Path | np.ndarray) -> torch.Tensor:
        """One image (a file, or an RGB uint8 (h, w, 3) array) as the model's input (3, H, W) float32."""
        array = read_image(Path(image)) if isinstance(image, str | Path) else np.asarray(image, dtype=np.uint8)
        return self.transform()(image=array)["image"]

    def denormalise(self, images: torch.Tensor) -> np.ndarray:
        """Normalised images (B, 3, H, W) back to RGB uint8 (B, H, W, 3): the pixels the model was shown."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        pixels = ((images * std + mean).clamp(0, 1) * 255).round().byte()
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def map_to_image(self, anomaly_map: np.ndarray, height: int, width: int) -> np.ndarray:
        """An anomaly map (H, W) of the model's input drawn back onto the original image (height, width): scaled
        bilinearly; with ``shorter_side_crop`` placed where the centre crop came from, NaN outside it."""
        if self.resize == "square":
            return cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        shape = self.shape
        h, w = resized_shape(height, width, shape, square=False)
        top, left = crop_offsets((h, w), shape)
        values, inside = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        values[top : top + shape[0], left : left + shape[1]] = anomaly_map
        inside[top : top + shape[0], left : left + shape[1]] = 1.0
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
        inside = cv2.resize(inside, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.where(inside > 0.999, values, np.nan).astype(np.float32)

    def random_images(self, n: int, seed: int) -> torch.Tensor:
        """``n`` uniform random RGB images in [0, 1], normalised: (n, 3, H, W) float32 (export's parity check)."""
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.rand(n, 3, *self.shape, generator=generator)
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (self.mean, self.std))
        return (pixels - mean) / std
