"""An MVTec AD 2-like benchmark in the published layout, from scikit-image's photos (the real one cannot be downloaded
here): two objects of 1536x1152 (landscape, brick) and 1152x1536 (portrait, moon) pixels, 1.8 megapixels each; per
object 60 train/good, 15 validation/good, test_public with 15 good and 15 bad images (scratches, stains and
contamination, masks exact at full resolution) under six lightings, and 15 test_private (regular) and 15
test_private_mixed (lighting changed, name hidden) images without ground truth. Crops of the photo are upscaled 4x
(bicubic) to full size, then defects are drawn at full size, so the thinnest are a few pixels wide, as on the real
objects. Deterministic from the seed.

    .venv/bin/python experiments/2026-12-06_mvtec_ad2/make_data.py OUT [--seed 0]
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from fod_lightning.data.defects import DEFECT_FAMILIES, contamination
from fod_lightning.data.textures import _photo

OBJECTS = {"brick": (1152, 1536), "moon": (1536, 1152)}  # (H, W)
COUNTS = {"train": 60, "validation": 15, "good": 15, "bad": 15, "private": 15, "mixed": 15}
LIGHTING = {"regular": 1.0, "overexposed": 1.35, "underexposed": 0.6, "shift_1": 0.85, "shift_2": 1.15, "shift_3": 1.25}
MIXED = (0.6, 1.35, 0.85, 1.25, 1.15)


def crop(photo: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random (h/4, w/4) crop of the photo upscaled 4x to (h, w), RGB float in [0, 1]."""
    h, w = hw[0] // 4, hw[1] // 4
    y, x = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
    small = Image.fromarray(np.round(photo[y : y + h, x : x + w] * 255).astype(np.uint8))
    return np.asarray(small.resize((hw[1], hw[0]), Image.BICUBIC), dtype=np.float64) / 255.0


def save(path: Path, image: np.ndarray, gain: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(image * gain * 255), 0, 255).astype(np.uint8)).save(path)


def write_object(root: Path, name: str, hw: tuple[int, int], rng: np.random.Generator) -> None:
    photo, other = _photo(name), _photo("gravel")
    base = root / name
    for i in range(COUNTS["train"]):
        save(base / "train" / "good" / f"{i:03d}_regular.png", crop(photo, hw, rng))
    for i in range(COUNTS["validation"]):
        save(base / "validation" / "good" / f"{i:03d}_regular.png", crop(photo, hw, rng))
    lights = list(LIGHTING)
    for i in range(COUNTS["good"]):
        light = lights[i % len(lights)]
        save(base / "test_public" / "good" / f"{i:03d}_{light}.png", crop(photo, hw, rng), LIGHTING[light])
    families = list(DEFECT_FAMILIES.items())
    for i in range(COUNTS["bad"]):
        light, (_, make) = lights[i % len(lights)], families[i % len(families)]
        image = crop(photo, hw, rng)
        defective, mask = make(image, rng, crop(other, hw, rng)) if make is contamination else make(image, rng)
        save(base / "test_public" / "bad" / f"{i:03d}_{light}.png", defective, LIGHTING[light])
        save(base / "test_public" / "ground_truth" / "bad" / f"{i:03d}_{light}_mask.png", mask.astype(np.float64))
    for split, count, gains in (("test_private", COUNTS["private"], (1.0,)),
                                ("test_private_mixed", COUNTS["mixed"], MIXED)):  # fmt: skip
        suffix = "regular" if split == "test_private" else "mixed"
        for i in range(count):
            image = crop(photo, hw, rng)
            if i % 2:  # half of them defective (unknown to anyone but the server)
                make = families[i % len(families)][1]
                image = (make(image, rng, crop(other, hw, rng)) if make is contamination else make(image, rng))[0]
            save(base / split / f"{i:03d}_{suffix}.png", image, gains[i % len(gains)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for name, hw in OBJECTS.items():
        write_object(args.out, name, hw, rng)
        print(f"{name}: written under {args.out / name}")


if __name__ == "__main__":
    main()
