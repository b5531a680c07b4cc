"""Tiny MVTec AD 2 trees in the published layout (see /work/notes/mvtec_ad2.md, section 1).

Per object ``<root>/<obj>/``: ``train/good``, ``validation/good``, ``test_public/{good,bad}`` with
``test_public/ground_truth/bad/<stem>_mask.png`` (0/255), and the flat ``test_private`` (``NNN_regular.png``) and
``test_private_mixed`` (``NNN_mixed.png``) without ground truth. Images are RGB PNGs of textured grey; a defect is
a bright blob whose pixels are exactly the mask's 255 pixels. ``test_public`` cycles through the lighting suffixes
(``_regular``, ``_overexposed``, ...) and ``test_private_mixed`` scales each image's brightness, as the real
splits vary lighting. Everything is drawn from one seeded generator, so equal arguments give equal files.
"""

from pathlib import Path

import numpy as np
from PIL import Image

AD2_SIZES = {"can": (45, 61), "vial": (38, 27)}  # (H, W): odd and non-square, one portrait, one landscape
LIGHTING = ("regular", "overexposed", "underexposed", "shift_1", "shift_2", "shift_3")
_GAIN = {"regular": 1.0, "overexposed": 1.7, "underexposed": 0.45, "shift_1": 0.8, "shift_2": 1.2, "shift_3": 1.4}
MIXED_GAINS = (1.0, 0.5, 1.6, 0.75, 1.3)  # brightness of test_private_mixed images, cycled


def _blob_mask(rng: np.random.Generator, h: int, w: int, n_blobs: int) -> np.ndarray:
    """Boolean (h, w) mask of ``n_blobs`` ellipses fully inside the image (they may touch or overlap)."""
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(n_blobs):
        ry, rx = rng.uniform(1.5, max(2.0, h / 6)), rng.uniform(1.5, max(2.0, w / 6))
        cy, cx = rng.uniform(ry + 1, h - ry - 1), rng.uniform(rx + 1, w - rx - 1)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    return mask


def _image(rng: np.random.Generator, h: int, w: int, mask: np.ndarray | None, gain: float) -> np.ndarray:
    """RGB uint8: grey texture around 80, the mask's pixels bright (>= 230 before the lighting gain)."""
    base = rng.normal(80.0, 12.0, size=(h, w, 1)) + np.array([0.0, 4.0, -4.0])  # a slight colour cast
    if mask is not None:
        base[mask] = rng.uniform(230.0, 255.0, size=(int(mask.sum()), 1))
    return np.clip(base * gain, 0, 255).astype(np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_ad2(
    root: str | Path,
    objects: dict[str, tuple[int, int]] | None = None,
    n_train: int = 3,
    n_val: int = 2,
    n_public_good: int = 2,
    n_public_bad: int = 3,
    n_private: int = 3,
    n_private_mixed: int = 3,
    seed: int = 0,
) -> Path:
    """Write a tiny MVTec AD 2 tree under ``root`` for ``objects`` (name -> (H, W); default :data:`AD2_SIZES`).

    Defective images: every ``test_public/bad`` image (one blob, or two for odd indices) and every other private
    image (no mask is written for private splits, as in the real dataset). Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for obj, (h, w) in (objects or AD2_SIZES).items():
        base = root / obj
        for split, n in (("train", n_train), ("validation", n_val)):
            for i in range(n):
                _save(base / split / "good" / f"{i:03d}_regular.png", _image(rng, h, w, None, 1.0))
        for i in range(n_public_good):
            light = LIGHTING[i % len(LIGHTING)]
            _save(base / "test_public" / "good" / f"{i:03d}_{light}.png", _image(rng, h, w, None, _GAIN[light]))
        for i in range(n_public_bad):
            light = LIGHTING[i % len(LIGHTING)]
            mask = _blob_mask(rng, h, w, 1 + i % 2)
            stem = f"{i:03d}_{light}"
            _save(base / "test_public" / "bad" / f"{stem}.png", _image(rng, h, w, mask, _GAIN[light]))
            _save(base / "test_public" / "ground_truth" / "bad" / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
        for split, n, suffix in (
            ("test_private", n_private, "regular"),
            ("test_private_mixed", n_private_mixed, "mixed"),
        ):
            for i in range(n):
                mask = _blob_mask(rng, h, w, 1) if i % 2 else None
                gain = MIXED_GAINS[i % len(MIXED_GAINS)] if split == "test_private_mixed" else 1.0
                _save(base / split / f"{i:03d}_{suffix}.png", _image(rng, h, w, mask, gain))
    return root
