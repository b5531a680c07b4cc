"""Scoring new images with a fitted model (``python -m fod_lightning.predict``): raw anomaly maps, overlays and a
CSV of scores and labels.

Writes ``OUT/maps/<name>.npy`` (float32 (h, w): the anomaly map at the image's own size, drawn back from the model's
input by its data contract; NaN where the input did not see the image, outside a ``shorter_side_crop``),
``OUT/overlays/<name>.png`` (at the image's own size, one colour scale for the run, the pixel threshold marked),
``OUT/scores.csv`` (``image,score,label,output,error,threshold``) and ``OUT/predict.log`` (what was done).
``<name>`` is the image's path relative to the input folder without its suffix, so equal file names in
different sub-folders stay apart. Unreadable images get a CSV row with the error and no outputs; the exit
code is then 1 (0: all scored; 2: a user error stopped the run).
"""

import csv
import glob
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fod_lightning.data.contract import DataContract
from fod_lightning.data.transforms import read_image
from fod_lightning.deploy.checkpoint import command_model
from fod_lightning.errors import ConfigError, UserError, one_line
from fod_lightning.metrics.thresholds import label
from fod_lightning.reporting.plots import overlay
from fod_lightning.utils.atomic import atomic_path
from fod_lightning.utils.checks import WORKERS, check_count

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def find_images(spec: str) -> tuple[list[Path], Path]:
    """The images named by ``spec`` (a file, a folder searched recursively, or a glob pattern), sorted, and
    the folder their output names are relative to."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path], path.parent
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        root = path
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else path.parent
    if not files:
        raise ConfigError(
            f"input={spec} names no image file ({', '.join(IMAGE_SUFFIXES)}): give a file, folder or glob"
        )
    return files, root


def output_names(files: list[Path], root: Path) -> list[str]:
    """One distinct output name per file: its path relative to ``root`` without the suffix (the suffix is
    kept where two files differ only by it)."""
    stems = [p.relative_to(root).with_suffix("").as_posix() for p in files]
    taken: dict[str, int] = {}
    for s in stems:
        taken[s] = taken.get(s, 0) + 1
    return [s if taken[s] == 1 else p.relative_to(root).as_posix().replace(".", "_") for s, p in zip(stems, files)]


class ImageFiles(Dataset):
    """Images transformed per the model's data contract, by the transform evaluation uses; an unreadable
    file gives its error instead."""

    def __init__(self, files: list[Path], contract: DataContract) -> None:
        self.files, self.transform = files, contract.transform()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        try:
            array = read_image(self.files[index])
        except UserError as err:
            return {"index": index, "error": one_line(err)}
        return {"index": index, "image": self.transform(image=array)["image"], "size": array.shape[:2]}  # (3, H, W)


def collate(items: list[dict]) -> list[dict]:
    return items


def predict(cfg: DictConfig) -> dict:
    """Score every image of ``cfg.input``; returns counts ``{"scored", "failed"}`` and the CSV path.

    Two passes: the images are scored (maps saved), then drawn on one colour scale for the whole run (every map's
    range, the pixel threshold included), each overlay at its image's size."""
    check_count("batch_size", cfg.batch_size, 1, "images scored at once", 8)
    check_count("num_workers", cfg.num_workers, 0, WORKERS, 2)
    files, root = find_images(str(cfg.input))
    model = command_model(cfg)
    log.info("model %s (%s) from %s, fitted on %s, input %s", type(model.net).__name__, type(model).__name__,
             cfg.ckpt_path, model.fitted_on, model.contract)  # fmt: skip
    device = torch.device(cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    net = model.net.to(device).eval()
    image, pixel = model.thresholds.for_decisions(cfg.threshold, cfg.pixel_threshold)
    log.info("image threshold: %s; pixel threshold: %s", image.text(), pixel.text())
    if image.value is None:
        log.warning("the checkpoint has no calibrated threshold: labels are left empty (set threshold=VALUE)")
    log.info("%d image(s) under %s", len(files), root)
    out = Path(cfg.output_dir).expanduser()
    rows = [{"image": str(f), "score": "", "label": "", "output": n, "error": "",
             "threshold": "" if image.value is None else f"{image.value:.6g}"}
            for f, n in zip(files, output_names(files, root))]  # fmt: skip
    loader = DataLoader(ImageFiles(files, model.contract), batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        collate_fn=collate)  # fmt: skip
    low, high = math.inf, -math.inf
    with torch.no_grad():
        for items in tqdm(loader, desc="predict", unit="batch", disable=not cfg.progress_bar):
            for it in items:
                if "error" in it:
                    rows[it["index"]] |= {"error": it["error"], "output": ""}
                    log.warning("%s: %s", rows[it["index"]]["image"], it["error"])
            good = [it for it in items if "error" not in it]
            if not good:
                continue
            scores, maps = net.score_images(torch.stack([it["image"] for it in good]).to(device))
            for it, score, amap in zip(good, scores.cpu().numpy(), maps.float().cpu().numpy()):
                row = rows[it["index"]]
                row |= {"score": f"{float(score):.6g}", "label": label(float(score), image.value)}
                amap = model.contract.map_to_image(amap, *it["size"])  # the image's own size
                save_map(out, row["output"], amap)
                low, high = min(low, float(np.nanmin(amap))), max(high, float(np.nanmax(amap)))
    scored = [r for r in rows if not r["error"]]
    if scored:
        scale = colour_scale(low, high, pixel.value)
        log.info("overlays on one colour scale, %.4g to %.4g", *scale)
        for row in scored:
            draw_overlay(out, row, model.contract, pixel.value, scale)
    csv_path = write_csv(out / "scores.csv", rows)
    failed = len(rows) - len(scored)
    log.info("scored %d image(s), %d unreadable; %s", len(scored), failed, csv_path)
    return {"scored": len(scored), "failed": failed, "csv": str(csv_path)}


def colour_scale(low: float, high: float, threshold: float | None) -> tuple[float, float]:
    """The run's colour scale: every map's range, stretched to show the threshold."""
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    return (low, high) if high > low else (low, low + 1e-6)


def save_map(out: Path, name: str, amap: np.ndarray) -> None:
    path = out / "maps" / f"{name}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, amap.astype(np.float32))


def draw_overlay(out: Path, row: dict, contract: DataContract, threshold: float | None,
                 scale: tuple[float, float]) -> None:  # fmt: skip
    """The overlay of one scored image at the image's own size (its map saved at that size)."""
    rgb = read_image(Path(row["image"]))
    amap = np.load(out / "maps" / f"{row['output']}.npy")
    title = f"{row['image']}  score {float(row['score']):.4g} {row['label']}"
    overlay(rgb, amap, threshold, scale, title, out / "overlays" / f"{row['output']}.png")


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Written whole under a temporary name, then renamed: never a half-written CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "score", "label", "output", "error", "threshold"])
        writer.writeheader()
        writer.writerows(rows)
    return path
