"""Pictures of the final test pass: per-image panels, ROC + histogram, PRO curve, training losses, a W&B table.
They only draw: the predictions, the per-defect numbers and the thresholds come from the model."""

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from lightning import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torchmetrics.classification import BinaryROC

from fod_lightning.data.transforms import read_image, read_mask
from fod_lightning.metrics.collection import METRICS
from fod_lightning.metrics.defects import aupro_and_curve
from fod_lightning.metrics.thresholds import Threshold, is_anomalous
from fod_lightning.reporting.plots import PanelFigure, loss_curves, pro_curve, roc_and_histogram, validation_curves
from fod_lightning.reporting.wandb_logger import staging_inside


def panel_order(scores: np.ndarray, labels: np.ndarray) -> list[int]:
    """Worst mistakes first: normal images by descending score (false positives) alternating with anomalous
    images by ascending score (false negatives); the longer list's rest follows."""
    normal = [int(i) for i in np.flatnonzero(labels == 0)[np.argsort(-scores[labels == 0], kind="stable")]]
    anomalous = [int(i) for i in np.flatnonzero(labels == 1)[np.argsort(scores[labels == 1], kind="stable")]]
    pairs = [i for pair in zip(normal, anomalous) for i in pair]
    n = min(len(normal), len(anomalous))
    return pairs + normal[n:] + anomalous[n:]


def logged_series(trainer, names: Callable[[str], bool], x: str) -> dict[str, tuple[list[float], list[float]]]:
    """The logged values of the metrics ``names`` accepts, against column ``x`` (``step`` or ``epoch``), from the CSV
    logger's ``metrics.csv`` (empty without one)."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    path = Path(logger.log_dir) / "metrics.csv" if logger is not None else None
    if path is None or not path.is_file():
        return {}
    series: dict[str, tuple[list[float], list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if names(name) and value not in ("", None) and math.isfinite(float(value)):
                    xs, values = series.setdefault(name, ([], []))
                    xs.append(int(float(row[x])))
                    values.append(float(value))
    return series


def training_losses(trainer) -> dict[str, tuple[list[float], list[float]]]:
    """``train/*`` losses vs step."""
    return logged_series(trainer, lambda name: name.startswith("train/"), "step")


def validation_history(trainer) -> dict[str, tuple[list[float], list[float]]]:
    """The validation metrics (``val/<metric>``, not the best-so-far values) vs epoch, named by metric."""
    found = logged_series(trainer, lambda name: name.removeprefix("val/") in METRICS and name.startswith("val/"),
                          "epoch")  # fmt: skip
    return {name.removeprefix("val/"): xy for name, xy in found.items()}


FIGURES = ("roc_histogram", "pro_curve", "training_losses", "validation_metrics")  # per category, beside panels/


class TestPictures(Callback):
    """Draws the test predictions of one category (the model's evaluator keeps them).

    Panels show the raw anomaly maps on one colour scale per category (its test maps' min and max), so normal
    images do not look anomalous; the predicted mask uses the pixel threshold the model's thresholds choose
    (:meth:`~fod_lightning.metrics.thresholds.Thresholds.choose`), named in each panel's title. Panels come worst
    mistakes first (:func:`panel_order`), file names prefixed with the rank. Each image is shown at its own size, as
    it is on disk (not squashed to the model's input), its map drawn back by the data contract and its mask read
    from its file. Under DDP, rank zero draws them all, once.

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
        self.scale: tuple[float, float] | None = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.scale = None

    def on_test_end(self, trainer, pl_module) -> None:
        items = pl_module.evaluator.predictions
        if not trainer.is_global_zero or not items:
            return
        category = trainer.datamodule.category
        maps, masks = np.stack([it["map"] for it in items]), np.stack([it["mask"] for it in items])
        scores = np.array([it["score"] for it in items])
        labels = np.array([it["label"] for it in items])
        masks = masks if pl_module.evaluator.has_masks else np.zeros_like(masks)
        self.scale = (float(maps.min()), float(maps.max()))
        protocol = getattr(trainer.datamodule, "val_protocol", "paper")
        pixel = pl_module.thresholds.choose("pixel", protocol, maps, masks)
        image = pl_module.thresholds.choose("image", protocol, scores, labels)
        self._curves(scores, labels, maps, masks, image, category, trainer, pl_module.evaluator.aupro_fpr_limit)
        unified = " (unified model)" if (pl_module.fitted_on or {}).get("setting") == "unified" else ""
        order = panel_order(scores, labels)
        width = max(3, len(str(len(order))))
        panel_paths, originals = {}, Originals(trainer.datamodule)
        with PanelFigure(self.scale) as panels:
            for rank, k in enumerate(order[: self.max_panels], 1):
                it = items[k]
                path = self.dirpath / "panels" / f"{rank:0{width}d}_{it['defect']}_{Path(it['path']).stem}.png"
                verdicts = verdict(it["score"], it["label"], image.value)
                title = (f"#{rank} {category}{unified} / {it['defect']} / {Path(it['path']).name}: score "
                         f"{it['score']:.4g}{verdicts}\npixel {pixel.text()}")  # fmt: skip
                panels.draw(*originals.of(it["path"], maps[k]), pixel.value, title, path)
                panel_paths[k] = path
        self._log_figures(trainer, category)
        if self.wandb_table:
            self._log_table(trainer, items, maps, order, panel_paths, category)

    def _curves(self, scores, labels, maps, masks, image: Threshold, category: str, trainer, limit: float) -> None:
        """ROC + histogram (both classes needed), PRO curve (ground-truth regions needed), training losses."""
        if len(set(labels.tolist())) == 2:
            roc = BinaryROC(normalization=None, sync_on_compute=False)  # raw scores: no sigmoid
            roc.update(torch.from_numpy(scores), torch.from_numpy(labels))
            fpr, tpr, _ = roc.compute()
            auroc = float(torch.trapezoid(tpr, fpr))
            roc_and_histogram(fpr.numpy(), tpr.numpy(), scores, labels, auroc, category,
                              self.dirpath / "roc_histogram.png", image.value, image.source)  # fmt: skip
        if masks.any() and not masks.all():
            aupro, fpr, pro = aupro_and_curve(maps, masks, limit)
            pro_curve(fpr, pro, aupro, limit, f"{category}: pixel PRO curve", self.dirpath / "pro_curve.png")
        losses = training_losses(trainer)
        if losses:
            loss_curves(losses, f"{category}: training losses", self.dirpath / "training_losses.png")
        history = validation_history(trainer)
        if history:
            validation_curves(history, f"{category}: validation metrics per epoch",
                              self.dirpath / "validation_metrics.png")  # fmt: skip

    def _log_figures(self, trainer, category: str) -> None:
        """The category's figures (ROC and histogram, PRO curve, losses, validation per epoch) to any W&B logger."""
        loggers = wandb_loggers(trainer)
        figures = {f.stem: f for f in (self.dirpath / f"{name}.png" for name in FIGURES) if f.is_file()}
        if not loggers or not figures:
            return
        import wandb

        for lg in loggers:
            with staging_inside(lg.experiment):
                lg.experiment.log({f"test/{category}/{name}": wandb.Image(str(f)) for name, f in figures.items()})

    def _log_table(self, trainer, items: list[dict], maps: np.ndarray, order: list[int], panel_paths: dict,
                   category: str) -> None:  # fmt: skip
        loggers = wandb_loggers(trainer)
        if not loggers:
            return
        import wandb

        lo, hi = self.scale
        table = wandb.Table(columns=["path", "defect", "label", "score", "image", "mask", "anomaly_map", "panel",
                                     "rank"])  # fmt: skip
        originals = Originals(trainer.datamodule)
        for rank, k in enumerate(order, 1):
            it = items[k]
            rgb, mask, amap = originals.of(it["path"], maps[k])
            shown = np.nan_to_num((amap - lo) / max(hi - lo, 1e-12) * 255, nan=0.0).clip(0, 255)
            panel_image = wandb.Image(str(panel_paths[k])) if k in panel_paths else None
            table.add_data(it["path"], it["defect"], it["label"], it["score"], wandb.Image(rgb),
                           wandb.Image(mask * 255), wandb.Image(shown.astype(np.uint8)), panel_image,
                           rank)  # fmt: skip
        for lg in loggers:
            with staging_inside(lg.experiment):
                lg.experiment.log({f"test/{category}/predictions": table})


class Originals:
    """Test images as they are on disk: the image, its mask (zeros without one) and a map of the model's input drawn
    back onto it by the data contract (NaN where the input did not see the image)."""

    def __init__(self, datamodule) -> None:
        self.contract = datamodule.contract
        self.masks = {str(s.image_path): s.mask_path for s in datamodule.split("test").samples}

    def of(self, path: str, amap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rgb = read_image(Path(path))
        mask_path = self.masks.get(path)
        mask = read_mask(mask_path) if mask_path is not None else np.zeros(rgb.shape[:2], np.uint8)
        return rgb, mask, self.contract.map_to_image(amap, *rgb.shape[:2])


def wandb_loggers(trainer) -> list:
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def verdict(score: float, label: int, threshold: float | None) -> str:
    """``, false positive`` etc. against the image threshold (empty without one)."""
    if threshold is None:
        return ""
    flagged = is_anomalous(score, threshold)
    return {(0, True): ", false positive", (1, False): ", false negative"}.get((label, flagged), ", correct")
