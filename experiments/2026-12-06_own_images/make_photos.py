"""A user's own product photos, as the first-day trial of issue 28 used them: 150 normal training photos of one product
at 320x240 (4:3, not square), 20 normal and 20 defective test photos with masks, in the folder layout
(``good/``, ``test_good/``, ``defects/<type>/``, ``masks/<type>/<stem>_mask.png``), saved as PNG, and the same normal
test photos saved as JPEG (quality 92) in ``test_good_jpeg/``.

The product: scikit-image's ``coffee`` photo (a cup on a saucer), each photo a slightly shifted view with its own
brightness and sensor noise, as a fixed camera sees parts on a line. Defects: the embedded benchmark's scratches and
stains (``fod_lightning.data.defects``).

    .venv/bin/python experiments/2026-12-06_own_images/make_photos.py DATA_DIR
"""

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from fod_lightning.data.defects import scratch, stain

SIZE = (240, 320)  # (H, W)


def product() -> np.ndarray:
    photo = Image.fromarray(skimage.data.coffee()).resize((360, 270), Image.Resampling.LANCZOS)
    return np.asarray(photo).astype(np.float64) / 255.0


def view(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y, x = rng.integers(0, photo.shape[0] - SIZE[0] + 1), rng.integers(0, photo.shape[1] - SIZE[1] + 1)
    crop = photo[y : y + SIZE[0], x : x + SIZE[1]] * rng.uniform(0.95, 1.05)
    return np.clip(crop + rng.normal(0, 0.01, crop.shape), 0, 1)


def save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(array * 255), 0, 255).astype(np.uint8)).save(path, **kwargs)


def main(root: Path) -> None:
    rng, photo = np.random.default_rng(0), product()
    for i in range(150):
        save(root / "good" / f"{i:03d}.png", view(photo, rng))
    for i in range(20):
        image = view(photo, rng)
        save(root / "test_good" / f"{i:03d}.png", image)
        save(root / "test_good_jpeg" / f"{i:03d}.jpg", image, quality=92)
    for kind, make in (("scratch", scratch), ("stain", stain)):
        for i in range(10):
            image, mask = make(view(photo, rng), rng)
            save(root / "defects" / kind / f"{i:03d}.png", image)
            save(root / "masks" / kind / f"{i:03d}_mask.png", mask.astype(np.float64))
    print(f"written {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
