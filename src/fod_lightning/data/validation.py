"""``from_train`` validation: held-out normal training images plus synthetic-defect copies of them.

Model selection and thresholds then never see the test split, which is touched once, at the end.
"""

import numpy as np
import torch
from albumentations import Compose
from torch.utils.data import Dataset

from fod_lightning.data.defects import DEFECT_FAMILIES
from fod_lightning.data.samples import Sample
from fod_lightning.data.transforms import read_image
from fod_lightning.errors import ConfigError

VAL_PROTOCOLS = ("paper", "from_train")
WITHOUT_HOLD_OUT = {"data.val_fraction": "use data.val_protocol=paper",
                    "data.calibration_fraction": "set data.calibration_fraction=0"}  # fmt: skip


def held_out_count(fraction: float, n: int) -> int:
    """How many of ``n`` training images a hold-out of ``fraction`` takes (at least one)."""
    return max(1, round(fraction * n))


def split_held_out(
    samples: list[Sample], fraction: float, seed: int, key: str = "data.val_fraction"
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic (train, held_out) split of the normal training samples; order is kept.
    ``key``: the setting named in errors."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"{key}={fraction} must be in (0, 1)")
    n_held = held_out_count(fraction, len(samples))
    if len(samples) < 2:
        raise ConfigError(f"{key}={fraction} holds out training images, but there is {len(samples)}: add normal "
                          f"training images or {WITHOUT_HOLD_OUT.get(key, f'set {key}')}")  # fmt: skip
    if n_held >= len(samples):
        raise ConfigError(f"cannot hold out {n_held} of {len(samples)} training images: lower {key}")
    held = set(np.random.default_rng(seed).choice(len(samples), n_held, replace=False).tolist())
    return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]


class HeldOutDefectsDataset(Dataset):
    """Each held-out normal image twice: as is (label 0), and with a synthetic defect (label 1).

    The defect family cycles through the embedded benchmark's generators; the defect of item k is
    fixed by (seed, k), so every epoch validates on the same images.
    """

    def __init__(self, samples: list[Sample], transform: Compose, seed: int = 0) -> None:
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.families = sorted(DEFECT_FAMILIES)

    def __len__(self) -> int:
        return 2 * len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index % len(self.samples)]
        image = read_image(sample.image_path)
        mask = np.zeros(image.shape[:2], dtype=np.uint8)
        defect = "good"
        if index >= len(self.samples):
            defect = self.families[index % len(self.families)]
            rng = np.random.default_rng([self.seed, index])
            defective, bool_mask = DEFECT_FAMILIES[defect](image.astype(np.float64) / 255.0, rng)
            image = np.clip(np.round(defective * 255), 0, 255).astype(np.uint8)
            mask = bool_mask.astype(np.uint8)
        out = self.transform(image=image, mask=mask)
        return {
            "image": out["image"],
            "label": int(defect != "good"),
            "mask": torch.as_tensor(out["mask"], dtype=torch.uint8),
            "path": str(sample.image_path),
            "defect_type": f"synthetic_{defect}" if defect != "good" else defect,
        }
