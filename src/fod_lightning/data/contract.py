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
    read_image,
    resized_shape,
)
from fod_lightning.errors import ConfigError

PREPROCESSING = (
    "RGB; resized with PIL LANCZOS: square -> S x S, shorter_side_crop -> shorter side S then centre crop "
    "S x S; scaled to [0, 1] (pixel / 255); (x - mean) / std per channel; NCHW float32"
)


@dataclass(frozen=True)
class DataContract:
    """Input of a fitted model: square side ``image_size`` (S), the ``resize`` rule that brings an image there
    (``square`` or ``shorter_side_crop``), and the per-channel ``mean``/``std`` its backbone's weights expect."""

    image_size: int
    resize: str = "square"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", int(self.image_size))
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

    def to_dict(self) -> dict:
        """Plain types (lists, not tuples): what a checkpoint loaded ``weights_only`` can hold."""
        values = asdict(self)
        return values | {"mean": list(self.mean), "std": list(self.std)}

    def transform(self, augment: bool = False):
        """The joint image + mask transform (albumentations) that evaluation, ``predict`` and training use."""
        return build_transform(self.image_size, self.resize, augment=augment, mean=self.mean, std=self.std)

    def preprocess(self, image: str | Path | np.ndarray) -> torch.Tensor:
        """One image (a file, or an RGB uint8 (H, W, 3) array) as the model's input (3, S, S) float32."""
        array = read_image(Path(image)) if isinstance(image, str | Path) else np.asarray(image, dtype=np.uint8)
        return self.transform()(image=array)["image"]

    def denormalise(self, images: torch.Tensor) -> np.ndarray:
        """Normalised images (B, 3, S, S) back to RGB uint8 (B, S, S, 3): the pixels the model was shown."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        pixels = ((images * std + mean).clamp(0, 1) * 255).round().byte()
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def map_to_image(self, anomaly_map: np.ndarray, height: int, width: int) -> np.ndarray:
        """An anomaly map (S, S) of the model's input drawn back onto the original image (height, width): scaled
        bilinearly; with ``shorter_side_crop`` placed where the centre crop came from, NaN outside it."""
        if self.resize == "square":
            return cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        h, w = resized_shape(height, width, self.image_size, square=False)
        top, left = int(round((h - self.image_size) / 2.0)), int(round((w - self.image_size) / 2.0))
        values, inside = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
        values[top : top + self.image_size, left : left + self.image_size] = anomaly_map
        inside[top : top + self.image_size, left : left + self.image_size] = 1.0
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
        inside = cv2.resize(inside, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.where(inside > 0.999, values, np.nan).astype(np.float32)

    def random_images(self, n: int, seed: int) -> torch.Tensor:
        """``n`` uniform random RGB images in [0, 1], normalised: (n, 3, S, S) float32 (export's parity check)."""
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.rand(n, 3, self.image_size, self.image_size, generator=generator)
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (self.mean, self.std))
        return (pixels - mean) / std
