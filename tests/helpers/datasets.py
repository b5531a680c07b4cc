"""Tiny datasets written in each benchmark's published on-disk layout.

Every anomalous image holds one white rectangle on black and its mask marks the same rectangle, so after resize /
crop the batch mask must equal the expected rectangle and the image must be bright there.
"""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

S = 32
SQUARE = (64, 64)  # (W, H); square resize to 32 halves it exactly
SQUARE_RECT = (16, 8, 32, 24)  # (x0, y0, x1, y1) in the file
SQUARE_EXPECTED = (8, 4, 16, 12)  # in the 32 x 32 batch
WIDE = (96, 64)  # shorter side 64 -> 32 gives 48 x 32, centre crop starts at x = 8
WIDE_RECT = (24, 8, 40, 24)  # scaled (12, 4, 20, 12), cropped (4, 4, 12, 12)
WIDE_EXPECTED = (4, 4, 12, 12)


def rect_array(size: tuple[int, int], rect: tuple[int, int, int, int] | None, value: int = 255) -> np.ndarray:
    w, h = size
    a = np.zeros((h, w), dtype=np.uint8)
    if rect is not None:
        x0, y0, x1, y1 = rect
        a[y0:y1, x0:x1] = value
    return a


def write_image(path: Path, size=SQUARE, rect=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = rect_array(size, rect)
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(path, quality=95)


def write_mask(path: Path, size=SQUARE, rect=None, value: int = 255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rect_array(size, rect, value)).save(path)


def write_mvtec(root: Path, cat: str = "bottle") -> Path:
    for i in range(3):
        write_image(root / cat / "train" / "good" / f"{i:03d}.png")
    for i in range(2):
        write_image(root / cat / "test" / "good" / f"{i:03d}.png")
        write_image(root / cat / "test" / "crack" / f"{i:03d}.png", rect=SQUARE_RECT)
        write_mask(root / cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", rect=SQUARE_RECT)
    return root


BTAD_FORMATS = {  # category: (image extension, mask extension, size, rect, expected)
    "01": (".bmp", ".png", SQUARE, SQUARE_RECT, SQUARE_EXPECTED),
    "02": (".png", ".png", SQUARE, SQUARE_RECT, SQUARE_EXPECTED),
    "03": (".bmp", ".bmp", WIDE, WIDE_RECT, WIDE_EXPECTED),
}


def write_btad(root: Path, cat: str) -> Path:
    ext, mask_ext, size, rect, _ = BTAD_FORMATS[cat]
    for i in range(3):
        write_image(root / cat / "train" / "ok" / f"{i:04d}{ext}", size)
    for i in range(2):
        write_image(root / cat / "test" / "ok" / f"{i:04d}{ext}", size)
        write_image(root / cat / "test" / "ko" / f"{i:04d}{ext}", size, rect)
        write_mask(root / cat / "ground_truth" / "ko" / f"{i:04d}{mask_ext}", size, rect)
    return root


def write_mvtec3d(root: Path, cat: str = "bagel") -> Path:
    base = root / cat
    for split, kind, n in (("train", "good", 3), ("validation", "good", 2), ("test", "good", 2), ("test", "hole", 2)):
        for i in range(n):
            anomalous = kind != "good"
            write_image(base / split / kind / "rgb" / f"{i:03d}.png", WIDE, WIDE_RECT if anomalous else None)
            (base / split / kind / "xyz").mkdir(parents=True, exist_ok=True)
            (base / split / kind / "xyz" / f"{i:03d}.tiff").write_bytes(b"II*\x00not a real point cloud")
            if split == "test":  # MVTec 3D-AD ships all-zero gt for good test images too
                write_mask(base / split / kind / "gt" / f"{i:03d}.png", WIDE, WIDE_RECT if anomalous else None)
    return root


def write_visa(root: Path) -> Path:
    rows = []
    for cat in ("candle", "pcb1"):
        for i in range(3):
            rows.append([cat, "train", "normal", f"{cat}/Data/Images/Normal/{i:04d}.JPG", ""])
        for i in range(3, 5):
            rows.append([cat, "test", "normal", f"{cat}/Data/Images/Normal/{i:04d}.JPG", ""])
        for i in range(2):
            image, mask = f"{cat}/Data/Images/Anomaly/{i:03d}.JPG", f"{cat}/Data/Masks/Anomaly/{i:03d}.png"
            rows.append([cat, "test", "anomaly", image, mask])
    for _, _, label, image, mask in rows:
        write_image(root / image, rect=SQUARE_RECT if label == "anomaly" else None)
        if mask:
            write_mask(root / mask, rect=SQUARE_RECT, value=2)  # VisA masks hold class ids, not 255
    (root / "split_csv").mkdir(parents=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["object", "split", "label", "image", "mask"], *rows])
    return root


def write_folder(root: Path, n_normal: int = 10, masks: bool = True) -> Path:
    for i in range(n_normal):
        write_image(root / "good" / f"n{i:02d}.jpg")
    for kind, ext in (("scratch", ".png"), ("dent", ".bmp")):
        for i in range(2):
            write_image(root / "defects" / kind / f"d{i}.png", rect=SQUARE_RECT)
            if masks:
                write_mask(root / "masks" / kind / f"d{i}_mask{ext}", rect=SQUARE_RECT)
    return root


def write_own_photos(root: Path, size=(64, 48), n_normal: int = 8, n_defect: int = 3, mask_suffix: str = "_mask",
                     ext: str = ".png") -> Path:  # fmt: skip
    """A user's product photos in the folder layout: non-square (``size`` = (W, H)) textured normal images in
    ``good/``, images with a bright blob in ``defects/scratch/``, their masks in ``masks/scratch/`` named
    ``<stem><mask_suffix>.png``."""
    rng = np.random.default_rng(0)
    w, h = size
    base = (np.add.outer(np.arange(h), np.arange(w)) % 16 * 8).astype(np.uint8)

    def photo() -> np.ndarray:
        noise = rng.integers(0, 40, (h, w), dtype=np.uint8)
        return np.stack([base + noise] * 3, axis=-1)

    for i in range(n_normal):
        (root / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo()).save(root / "good" / f"n{i:02d}{ext}")
    for i in range(n_defect):
        image, mask = photo(), np.zeros((h, w), np.uint8)
        y, x = h // 3 + i, w // 2 - i
        image[y : y + 8, x : x + 10] = 255
        mask[y : y + 8, x : x + 10] = 255
        (root / "defects" / "scratch").mkdir(parents=True, exist_ok=True)
        (root / "masks" / "scratch").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "defects" / "scratch" / f"d{i}.png")
        Image.fromarray(mask).save(root / "masks" / "scratch" / f"d{i}{mask_suffix}.png")
    return root
