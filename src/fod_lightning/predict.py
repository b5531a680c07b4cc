"""Score new images with a fitted model: raw anomaly maps, overlays and a CSV of scores and labels.

python -m fod_lightning.predict ckpt_path=CKPT input=FOLDER output_dir=OUT
python -m fod_lightning.predict ckpt_path=CKPT 'input=/data/line3/*.png' output_dir=OUT threshold=0.9
python -m fod_lightning.predict ckpt_path=bottle-pix.pth reference_features=bottle.pkl \\
    model/net/backbone=wide_resnet50_2 input=IMG output_dir=OUT          # an authors' checkpoint

Writes ``OUT/maps/<name>.npy`` (float32 (S, S): the stage-averaged, unsmoothed map of the pixel metrics, at the
model's input size S), ``OUT/overlays/<name>.png`` and ``OUT/scores.csv`` (``image,score,label,output,error``).
``<name>`` is the image's path relative to the input folder without its suffix, so equal file names in
different sub-folders stay apart. Unreadable images get a CSV row with the error and no outputs; the exit
code is then 1 (0: all scored; 2: a user error stopped the run).
"""

import csv
import glob
import logging
import os
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fod_lightning.data.transforms import build_transform, read_image
from fod_lightning.deploy.checkpoint import check_fits, load, loaded_model_info
from fod_lightning.errors import ConfigError, FODUserError, one_line, print_user_error
from fod_lightning.utils.checks import WORKERS, check_count, check_given
from fod_lightning.utils.config_dir import CONFIG_DIR

log = logging.getLogger("fod_lightning")
USAGE = "python -m fod_lightning.predict ckpt_path=CKPT input=IMAGES output_dir=DIR"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LABELS = ("normal", "anomalous")


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

    def __init__(self, files: list[Path], contract: dict) -> None:
        self.files = files
        self.transform = build_transform(int(contract["image_size"]), contract["resize"], mean=contract["mean"],
                                         std=contract["std"])  # fmt: skip
        self.mean = torch.tensor(contract["mean"]).view(3, 1, 1)
        self.std = torch.tensor(contract["std"]).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        try:
            array = read_image(self.files[index])
        except FODUserError as err:
            return {"index": index, "error": one_line(err)}
        image = self.transform(image=array)["image"]  # (3, S, S) normalised
        rgb = ((image * self.std + self.mean) * 255).round().clamp(0, 255).byte()  # for the overlay
        return {"index": index, "image": image, "rgb": rgb}


def collate(items: list[dict]) -> list[dict]:
    return items


def load_model(cfg: DictConfig):
    """The fitted module of ``ckpt_path``: a fod_lightning checkpoint, or an authors' checkpoint with
    ``reference_features`` (default: ``<class>.pkl`` beside it, as ``run``) and the backbone given as
    ``model/net/backbone``."""
    from fod_lightning.deploy.authors import is_official_checkpoint, load_official

    path = Path(cfg.ckpt_path).expanduser()
    if path.is_file() and is_official_checkpoint(path):
        backbone = hydra.utils.instantiate(cfg.model.net.backbone)
        return load_official(path, cfg.get("reference_features"), backbone, resize=cfg.resize)
    model = load(path)  # reads the checkpoint safely, with one-line errors
    if cfg.get("category") and not cfg.get("allow_mismatch", False):
        check_fits(loaded_model_info(model), path, cfg.category, None, None)
    return model


def decide(value: float, threshold: float | None) -> str:
    return "" if threshold is None else LABELS[int(value > threshold)]


def predict(cfg: DictConfig) -> dict:
    """Score every image of ``cfg.input``; returns counts ``{"scored", "failed"}`` and the CSV path."""
    check_given(cfg, USAGE)
    check_count("batch_size", cfg.batch_size, 1, "images scored at once", 8)
    check_count("num_workers", cfg.num_workers, 0, WORKERS, 2)
    files, root = find_images(str(cfg.input))
    model = load_model(cfg)
    device = torch.device(cfg.device if cfg.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    net = model.net.to(device).eval()
    thresholds = model.thresholds or {}
    image_threshold = cfg.threshold if cfg.threshold is not None else thresholds.get("image")
    pixel_threshold = cfg.pixel_threshold if cfg.pixel_threshold is not None else thresholds.get("pixel")
    if image_threshold is None:
        log.warning("the checkpoint has no calibrated threshold: labels are left empty (set threshold=VALUE)")
    out = Path(cfg.output_dir).expanduser()
    names = output_names(files, root)
    rows = [{"image": str(f), "score": "", "label": "", "output": n, "error": ""} for f, n in zip(files, names)]
    loader = DataLoader(ImageFiles(files, model.contract), batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        collate_fn=collate)  # fmt: skip
    with torch.no_grad():
        for items in tqdm(loader, desc="predict", unit="batch", disable=not cfg.progress_bar):
            good = [it for it in items if "error" not in it]
            for it in items:
                if "error" in it:
                    rows[it["index"]]["error"] = it["error"]
                    rows[it["index"]]["output"] = ""
            if not good:
                continue
            scores, maps = net.score_images(torch.stack([it["image"] for it in good]).to(device))
            for it, score, amap in zip(good, scores.cpu().numpy(), maps.float().cpu().numpy()):
                row = rows[it["index"]]
                row |= {"score": f"{float(score):.6g}", "label": decide(float(score), image_threshold)}
                write_outputs(out, row["output"], amap, it["rgb"].permute(1, 2, 0).numpy(), pixel_threshold,
                              f"{row['image']}  score {float(score):.4g} {row['label']}")  # fmt: skip
    csv_path = write_csv(out / "scores.csv", rows)
    failed = sum(bool(r["error"]) for r in rows)
    return {"scored": len(rows) - failed, "failed": failed, "csv": str(csv_path)}


def write_outputs(out: Path, name: str, amap: np.ndarray, rgb: np.ndarray, threshold: float | None, title: str) -> None:
    from fod_lightning.reporting.plots import overlay

    map_path = out / "maps" / f"{name}.npy"
    map_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(map_path, amap.astype(np.float32))
    overlay(rgb, amap, threshold, title, out / "overlays" / f"{name}.png")


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Written whole to a temporary file, then renamed: never a half-written CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "score", "label", "output", "error"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        summary = predict(cfg)
    except Exception as err:
        print_user_error(err)
        sys.exit(2)
    print(f"scored {summary['scored']} image(s), {summary['failed']} unreadable: {summary['csv']}")
    if summary["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
