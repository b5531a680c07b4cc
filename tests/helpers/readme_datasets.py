"""Tiny datasets in the real on-disk layouts, written where the README's commands read them (``/data/<X>``).

``tests/test_readme.py`` runs every README command it can with each ``/data/<X>`` path remapped to
``<tmp>/data/<X>``; the folder is written first, by the writer named here for its README path. The images are
the tiny ones of ``tests/test_data_layouts.py`` (64 px, a white rectangle on black marks the defect, masks
mark the same rectangle).
"""

import re
from collections.abc import Callable
from pathlib import Path

from helpers.ad2_layout import write_ad2
from helpers.datasets import SQUARE_RECT, write_btad, write_image, write_mask, write_mvtec3d, write_visa

# data.category values the README's MVTec AD commands name (capsule only in a SLURM command, which is composed).
MVTEC_CATEGORIES = ("bottle", "cable", "screw", "zipper")


def write_mvtec(root: Path, categories=MVTEC_CATEGORIES, n_train: int = 6) -> None:
    """MVTec AD: ``<cat>/train/good``, ``<cat>/test/{good,crack}``, ``<cat>/ground_truth/crack/<stem>_mask.png``.
    Six training images, so that ``data.val_protocol=from_train`` (Optuna) still has some after holding out
    validation and calibration images."""
    for cat in categories:
        for i in range(n_train):
            write_image(root / cat / "train" / "good" / f"{i:03d}.png")
        for i in range(2):
            write_image(root / cat / "test" / "good" / f"{i:03d}.png")
            write_image(root / cat / "test" / "crack" / f"{i:03d}.png", rect=SQUARE_RECT)
            write_mask(root / cat / "ground_truth" / "crack" / f"{i:03d}_mask.png", rect=SQUARE_RECT)


def write_widgets(root: Path) -> None:
    """The README's folder command: ``data.normal_dir=good data.abnormal_dirs=[scratch,dent] data.mask_dir=masks``
    (masks ``masks/<abnormal dir>/<stem>.<ext>``: the default empty ``data.mask_suffix``)."""
    for i in range(10):
        write_image(root / "good" / f"n{i:02d}.png")
    for kind, ext in (("scratch", ".png"), ("dent", ".bmp")):
        for i in range(2):
            write_image(root / kind / f"d{i}.png", rect=SQUARE_RECT)
            write_mask(root / "masks" / kind / f"d{i}{ext}", rect=SQUARE_RECT)


def write_new_images(root: Path) -> None:
    """Images to score with ``predict``: two at the top (what ``'input=<root>/*.png'`` finds) and one in a
    sub-folder (a folder input is searched recursively)."""
    write_image(root / "part_a.png")
    write_image(root / "part_b.png", rect=SQUARE_RECT)
    write_image(root / "station2" / "part_c.png", rect=SQUARE_RECT)


# README path -> its writer. A README command reading another /data/ path fails until it is added here.
README_DATA: dict[str, Callable[[Path], None]] = {
    "/data/mvtec_anomaly_detection": lambda root: write_mvtec(root, ("bottle",)),
    "/data/mvtec": write_mvtec,
    "/data/BTech_Dataset_transformed": lambda root: [write_btad(root, cat) for cat in ("01", "02", "03")],
    "/data/mvtec_3d_anomaly_detection": write_mvtec3d,
    "/data/VisA": write_visa,  # candle and pcb1
    "/data/widgets": write_widgets,
    "/data/line3": write_new_images,
    "/data/new": write_new_images,
    "/data/mvtec_ad_2": lambda root: write_ad2(root, n_train=6, n_val=4),  # can and vial
}
DATA_PATH = re.compile(r"(?<![\w./])/data/[^/\s'\"*]+")


def remap_data_paths(token: str, data_dir: Path) -> str:
    """``data.root=/data/mvtec`` -> ``data.root=<data_dir>/mvtec``, the folder written (once) by its writer."""
    for path in DATA_PATH.findall(token):
        if path not in README_DATA:
            raise KeyError(f"README path {path} has no tiny dataset: add a writer to README_DATA in {__file__}")
        target = data_dir / path.removeprefix("/data/")
        if not target.exists():
            README_DATA[path](target)
        token = token.replace(path, str(target), 1)
    return token
