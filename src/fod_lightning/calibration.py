"""Decision thresholds saved with a fitted model: anomalous when the score exceeds them.

``normal`` (default): a quantile of the scores of normal images the model was not trained on (the held-out
calibration images, see ``data.calibration_fraction``): ``image_quantile`` of their image scores and
``pixel_quantile`` of all their anomaly-map pixels. It needs no defect examples; the expected false-alarm
rate on normal parts is about ``1 - quantile``.

``val_f1``: the F1-max thresholds of the labelled validation split of ``data.val_protocol=from_train``
(held-out normal images and synthetic-defect copies). Under ``paper`` the validation split is the test
split, and thresholds are never chosen on it.

``none``: no thresholds; ``predict`` then needs ``threshold=``.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from fod_lightning.errors import ConfigError

SOURCES = ("normal", "val_f1", "none")


@dataclass(frozen=True)
class CalibrationSettings:
    """``model.calibration``: how thresholds are chosen (see the module docstring)."""

    source: str = "normal"
    image_quantile: float = 0.99
    pixel_quantile: float = 0.999

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"model.calibration.source={self.source!r} is unknown; use one of {SOURCES}")
        for key in ("image_quantile", "pixel_quantile"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"model.calibration.{key}={getattr(self, key)} must be in (0, 1]")

    def check_protocol(self, val_protocol: str) -> None:
        if self.source == "val_f1" and val_protocol != "from_train":
            raise ConfigError(
                "model.calibration.source=val_f1 needs data.val_protocol=from_train: under paper the "
                "validation split is the test split, and thresholds are never chosen on it"
            )


@torch.no_grad()
def normal_thresholds(
    score_images: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    images: Iterable[torch.Tensor],
    image_quantile: float,
    pixel_quantile: float,
) -> dict:
    """Quantiles of the image scores and map pixels of normal images.

    Args:
        score_images: images (B, 3, H, W) -> (image_score (B,), anomaly_map (B, H, W)).
        images: batches of normalised normal images.
    """
    scores, maps = [], []
    for batch in images:
        score, amap = score_images(batch)
        scores.append(score.float().cpu().numpy())
        maps.append(amap.float().cpu().numpy().ravel())
    if not scores:
        raise ValueError("threshold calibration needs at least one normal image")
    scores = np.concatenate(scores)
    return {
        "image": float(np.quantile(scores, image_quantile)),
        "pixel": float(np.quantile(np.concatenate(maps), pixel_quantile)),
        "num_images": int(len(scores)),
    }
