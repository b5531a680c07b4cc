"""Pictures and per-defect-type numbers of the final test pass: per-image panels, ROC + histogram, PRO curve,
training losses, a W&B table, and each defect type's image AUROC and pixel AUPRO."""

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback
from torchmetrics.functional.classification import binary_auroc, binary_roc

from fod_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fod_lightning.metrics import BinaryF1Max
from fod_lightning.metrics.aupro import AUPRO
from fod_lightning.reporting.plots import loss_curves, panel, pro_curve, roc_and_histogram
from fod_lightning.reporting.wandb_logger import staging_inside

FPR_LIMIT = 0.3
OPTIMISTIC = "test split's own F1-max threshold (optimistic)"


@dataclass(frozen=True)
class Threshold:
    value: float | None
    source: str

    def text(self) -> str:
        return f"threshold {self.value:.4g} ({self.source})" if self.value is not None else self.source


def choose_threshold(kind: str, saved: dict | None, val: dict | None, val_protocol: str, values: np.ndarray,
                     targets: np.ndarray) -> Threshold:  # fmt: skip
    """The ``kind`` (``image`` or ``pixel``) threshold the pictures use, and where it came from.

    First the thresholds calibrated and saved with the model (``model.thresholds``); then, under ``from_train``,
    the F1-max threshold of the last validation (``model.val_thresholds``); else the F1-max threshold of the test
    ``values`` against ``targets`` itself (optimistic: chosen on what it is shown on).
    """
    if (saved or {}).get(kind) is not None:
        return Threshold(float(saved[kind]), calibrated_source(saved, kind))
    if val_protocol == "from_train" and (val or {}).get(kind) is not None:
        return Threshold(float(val[kind]), "validation F1-max threshold, from_train")
    if targets.any() and not targets.all():
        f1 = BinaryF1Max(sync_on_compute=False)  # rank zero alone draws: no cross-process sync
        f1.update(torch.from_numpy(values).flatten(), torch.from_numpy(targets).flatten().bool())
        f1.compute()
        return Threshold(float(f1.threshold), OPTIMISTIC)
    return Threshold(None, f"no {kind} threshold: none calibrated, and no ground truth to choose one")


def calibrated_source(saved: dict, kind: str) -> str:
    if saved.get("source") == "normal":
        where = "held-out normal images" if saved.get("held_out") else "normal training images (not held out)"
        return f"calibrated on {saved.get('num_images', '?')} {where}, quantile {saved.get(f'{kind}_quantile')}"
    if saved.get("source") == "val_f1":
        return "calibrated: validation F1-max, from_train"
    return f"calibrated ({saved.get('source')})"


def panel_order(scores: np.ndarray, labels: np.ndarray) -> list[int]:
    """Worst mistakes first: normal images by descending score (false positives) alternating with anomalous
    images by ascending score (false negatives); the longer list's rest follows."""
    normal = [int(i) for i in np.flatnonzero(labels == 0)[np.argsort(-scores[labels == 0], kind="stable")]]
    anomalous = [int(i) for i in np.flatnonzero(labels == 1)[np.argsort(scores[labels == 1], kind="stable")]]
    pairs = [i for pair in zip(normal, anomalous) for i in pair]
    n = min(len(normal), len(anomalous))
    return pairs + normal[n:] + anomalous[n:]


def aupro_and_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Exact AUPRO up to FPR 0.3 (the project's metric) and the PRO curve it integrates (FPR, PRO)."""
    metric = AUPRO(fpr_limit=FPR_LIMIT, sync_on_compute=False)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks))
    normal, weight = metric._exact_counts()  # cumulative counts at every distinct score, descending
    fpr = np.concatenate([[0.0], (normal / normal[-1]).numpy()])
    pro = np.concatenate([[0.0], (weight / int(metric.num_regions)).numpy()])
    return float(metric.compute()), fpr, pro


def defect_metrics(scores: np.ndarray, labels: np.ndarray, maps: np.ndarray, masks: np.ndarray,
                   defects: list[str]) -> dict[str, dict]:  # fmt: skip
    """Per defect type: image AUROC (normal test images vs this type's images), pixel AUPRO over the maps of
    those images (only where this type has ground-truth regions) and the number of this type's images."""
    normal, kinds = labels == 0, np.array(defects)
    result = {}
    for kind in sorted(set(kinds[labels == 1])):
        chosen = normal | ((kinds == kind) & (labels == 1))
        numbers = {}
        if normal.any():
            auroc = binary_auroc(torch.from_numpy(scores[chosen]), torch.from_numpy(labels[chosen]))
            numbers["image_auroc"] = float(auroc)
        if masks[chosen].any() and not masks[chosen].all():
            numbers["pixel_aupro"] = aupro_and_curve(maps[chosen], masks[chosen])[0]
        result[str(kind)] = numbers | {"num_images": int((chosen & ~normal).sum())}
    return result


def training_losses(trainer) -> dict[str, tuple[list[float], list[float]]]:
    """``train/*`` losses vs step from the CSV logger's ``metrics.csv`` (empty without one)."""
    logger = next((lg for lg in trainer.loggers if type(lg).__name__ == "CSVLogger"), None)
    path = Path(logger.log_dir) / "metrics.csv" if logger is not None else None
    if path is None or not path.is_file():
        return {}
    series: dict[str, tuple[list[float], list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name.startswith("train/") and value not in ("", None) and math.isfinite(float(value)):
                    steps, values = series.setdefault(name, ([], []))
                    steps.append(int(float(row["step"])))
                    values.append(float(value))
    return series


class TestPictures(Callback):
    """Collects the test predictions of one category, draws them and measures each defect type.

    Panels show the raw anomaly maps on one colour scale per category (its test maps' min and max), so normal
    images do not look anomalous; the predicted mask uses the pixel threshold of :func:`choose_threshold`,
    named in each panel's title. Panels come worst mistakes first (:func:`panel_order`), file names prefixed with
    the rank. After the test, ``defects`` holds :func:`defect_metrics` (the run copies it into results.json)
    and ``scale`` the colour scale. Under DDP, rank zero gathers every process's test images (each scored once)
    and draws them all, once.

    Args:
        dirpath: output folder (``<run>/<category>/pictures``).
        max_panels: draw at most this many panels, the worst first (None: every test image).
        wandb_table: also log a ``wandb.Table`` (image, mask, anomaly map, panel, score, label, rank) to
            any W&B logger of the trainer.
    """

    def __init__(self, dirpath: str, max_panels: int | None = None, wandb_table: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.max_panels = max_panels
        self.wandb_table = wandb_table
        self.items: list[dict] = []
        self.defects: dict[str, dict] = {}
        self.scale: tuple[float, float] | None = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.items, self.defects, self.scale = [], {}, None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        mean = torch.tensor(IMAGENET_MEAN, device=batch.image.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=batch.image.device)[:, None, None]
        images = ((batch.image * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for i in range(len(batch)):
            self.items.append({
                "image": images[i], "mask": batch.mask[i].cpu().numpy(),
                "map": outputs.anomaly_map[i].float().cpu().numpy(), "score": float(outputs.image_score[i]),
                "label": int(batch.label[i]), "path": batch.path[i], "defect": batch.defect_type[i],
            })  # fmt: skip

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            self.items = self._gathered(trainer)
        if not trainer.is_global_zero or not self.items:
            return
        category = trainer.datamodule.category
        maps, masks = np.stack([it["map"] for it in self.items]), np.stack([it["mask"] for it in self.items])
        scores = np.array([it["score"] for it in self.items])
        labels = np.array([it["label"] for it in self.items])
        has_masks = bool(getattr(trainer.datamodule, "has_masks", True))
        masks = masks if has_masks else np.zeros_like(masks)
        self.scale = (float(maps.min()), float(maps.max()))
        protocol = getattr(trainer.datamodule, "val_protocol", "paper")
        saved, val = getattr(pl_module, "thresholds", None), getattr(pl_module, "val_thresholds", None)
        pixel = choose_threshold("pixel", saved, val, protocol, maps, masks)
        image = choose_threshold("image", saved, val, protocol, scores, labels)
        self.defects = defect_metrics(scores, labels, maps, masks, [it["defect"] for it in self.items])
        self._curves(scores, labels, maps, masks, image, category, trainer)
        order = panel_order(scores, labels)
        width = max(3, len(str(len(order))))
        panel_paths = {}
        for rank, k in enumerate(order[: self.max_panels], 1):
            it = self.items[k]
            path = self.dirpath / "panels" / f"{rank:0{width}d}_{it['defect']}_{Path(it['path']).stem}.png"
            title = (f"#{rank} {category} / {it['defect']} / {Path(it['path']).name}: score {it['score']:.4g}"
                     f"{verdict(it['score'], it['label'], image.value)}\npixel {pixel.text()}")  # fmt: skip
            panel(it["image"], it["mask"], maps[k], pixel.value, self.scale, title, path)
            panel_paths[k] = path
        if self.wandb_table:
            self._log_table(trainer, maps, order, panel_paths, category)

    def _gathered(self, trainer) -> list[dict]:
        """Every process's items on rank zero (empty elsewhere), in the one-process order (defect type, path)."""
        shards = [None] * trainer.world_size if trainer.is_global_zero else None
        dist.gather_object(self.items, shards, dst=0)
        if not trainer.is_global_zero:
            return []
        return sorted((it for shard in shards for it in shard), key=lambda it: (it["defect"], it["path"]))

    def _curves(self, scores, labels, maps, masks, image: Threshold, category: str, trainer) -> None:
        """ROC + histogram (both classes needed), PRO curve (ground-truth regions needed), training losses."""
        if len(set(labels.tolist())) == 2:
            fpr, tpr, _ = binary_roc(torch.from_numpy(scores), torch.from_numpy(labels))
            auroc = float(torch.trapezoid(tpr, fpr))
            roc_and_histogram(fpr.numpy(), tpr.numpy(), scores, labels, auroc, category,
                              self.dirpath / "roc_histogram.png", image.value, image.source)  # fmt: skip
        if masks.any() and not masks.all():
            aupro, fpr, pro = aupro_and_curve(maps, masks)
            pro_curve(fpr, pro, aupro, FPR_LIMIT, f"{category}: pixel PRO curve", self.dirpath / "pro_curve.png")
        losses = training_losses(trainer)
        if losses:
            loss_curves(losses, f"{category}: training losses", self.dirpath / "training_losses.png")

    def _log_table(self, trainer, maps: np.ndarray, order: list[int], panel_paths: dict, category: str) -> None:
        loggers = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        if not loggers:
            return
        import wandb

        lo, hi = self.scale
        table = wandb.Table(columns=["path", "defect", "label", "score", "image", "mask", "anomaly_map", "panel",
                                     "rank"])  # fmt: skip
        for rank, k in enumerate(order, 1):
            it, shown = self.items[k], (maps[k] - lo) / max(hi - lo, 1e-12) * 255
            panel_image = wandb.Image(str(panel_paths[k])) if k in panel_paths else None
            table.add_data(it["path"], it["defect"], it["label"], it["score"], wandb.Image(it["image"]),
                           wandb.Image(it["mask"] * 255), wandb.Image(shown.astype(np.uint8)), panel_image,
                           rank)  # fmt: skip
        for lg in loggers:
            with staging_inside(lg.experiment):
                lg.experiment.log({f"test/{category}/predictions": table})


def verdict(score: float, label: int, threshold: float | None) -> str:
    """``, false positive`` etc. against the image threshold (empty without one)."""
    if threshold is None:
        return ""
    flagged = score >= threshold
    return {(0, True): ", false positive", (1, False): ", false negative"}.get((label, flagged), ", correct")
