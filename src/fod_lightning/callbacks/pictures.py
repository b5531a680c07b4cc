"""Pictures of the final test pass: per-image panels, ROC + histogram, and a W&B table."""

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback
from torchmetrics.functional.classification import binary_roc

from fod_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fod_lightning.metrics import BinaryF1Max
from fod_lightning.plots import panel, roc_and_histogram
from fod_lightning.utils.wandb_mode import staging_inside


class TestPictures(Callback):
    """Collects the test predictions of one category and draws them.

    One normalisation per category (min and max over all its test maps), so normal images do not
    look anomalous; predicted masks use the pixel F1-max threshold. Under DDP, rank zero gathers every
    process's test images (each scored once) and draws them all, once.

    Args:
        dirpath: output folder (``<run>/<category>/pictures``).
        max_panels: draw at most this many panels (None: every test image).
        wandb_table: also log a ``wandb.Table`` (image, mask, anomaly map, panel, score, label) to
            any W&B logger of the trainer.
    """

    def __init__(self, dirpath: str, max_panels: int | None = None, wandb_table: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.max_panels = max_panels
        self.wandb_table = wandb_table
        self.items: list[dict] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.items = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        mean = torch.tensor(IMAGENET_MEAN, device=batch.image.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=batch.image.device)[:, None, None]
        images = ((batch.image * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for i in range(len(batch)):
            self.items.append({
                "image": images[i], "mask": batch.mask[i].cpu().numpy(), "map": outputs.anomaly_map[i].cpu().numpy(),
                "score": float(outputs.image_score[i]), "label": int(batch.label[i]), "path": batch.path[i],
                "defect": batch.defect_type[i],
            })  # fmt: skip

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            self.items = self._gathered(trainer)
        if not trainer.is_global_zero or not self.items:
            return
        category = trainer.datamodule.category
        maps = np.stack([it["map"] for it in self.items])
        lo, hi = float(maps.min()), float(maps.max())
        normalised = (maps - lo) / max(hi - lo, 1e-12)
        threshold = self._threshold(trainer, pl_module, normalised, lo, hi)
        scores = np.array([it["score"] for it in self.items])
        labels = np.array([it["label"] for it in self.items])
        self._curves(scores, labels, category)
        drawn = self.items if self.max_panels is None else self.items[: self.max_panels]
        panel_paths = []
        for it, amap in zip(drawn, normalised):
            name = f"{it['defect']}_{Path(it['path']).stem}.png"
            path = self.dirpath / "panels" / name
            title = f"{category} / {it['defect']} / {Path(it['path']).name}: score {it['score']:.4g}"
            panel(it["image"], it["mask"], amap, threshold, title, path)
            panel_paths.append(path)
        if self.wandb_table:
            self._log_table(trainer, normalised, panel_paths, category)

    def _gathered(self, trainer) -> list[dict]:
        """Every process's items on rank zero (empty elsewhere), in the one-process order (defect type, path)."""
        shards = [None] * trainer.world_size if trainer.is_global_zero else None
        dist.gather_object(self.items, shards, dst=0)
        if not trainer.is_global_zero:
            return []
        return sorted((it for shard in shards for it in shard), key=lambda it: (it["defect"], it["path"]))

    def _threshold(self, trainer, pl_module, normalised: np.ndarray, lo: float, hi: float) -> float:
        """Predicted-mask threshold on the normalised maps.

        Under ``from_train`` it is the pixel F1-max threshold of the last validation (the test split
        never chooses it); under ``paper`` the test maps' own F1-max threshold, as the authors' plots.
        """
        val_threshold = getattr(pl_module, "val_pixel_threshold", None)
        if getattr(trainer.datamodule, "val_protocol", "paper") == "from_train" and val_threshold is not None:
            return (val_threshold - lo) / max(hi - lo, 1e-12)
        masks = np.stack([it["mask"] for it in self.items])
        if not masks.any():
            return 0.5
        f1 = BinaryF1Max(sync_on_compute=False)  # rank zero alone draws: no cross-process sync
        f1.update(torch.from_numpy(normalised).flatten(), torch.from_numpy(masks).flatten().bool())
        f1.compute()
        return float(f1.threshold)

    def _curves(self, scores: np.ndarray, labels: np.ndarray, category: str) -> None:
        if len(set(labels.tolist())) < 2:
            return  # a ROC curve needs both classes
        fpr, tpr, _ = binary_roc(torch.from_numpy(scores), torch.from_numpy(labels))
        auroc = float(torch.trapezoid(tpr, fpr))
        roc_and_histogram(fpr.numpy(), tpr.numpy(), scores, labels, auroc, category, self.dirpath / "roc_histogram.png")

    def _log_table(self, trainer, normalised: np.ndarray, panel_paths: list[Path], category: str) -> None:
        loggers = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        if not loggers:
            return
        import wandb

        columns = ["path", "defect", "label", "score", "image", "mask", "anomaly_map", "panel"]
        table = wandb.Table(columns=columns)
        for k, it in enumerate(self.items):
            panel_image = wandb.Image(str(panel_paths[k])) if k < len(panel_paths) else None
            table.add_data(it["path"], it["defect"], it["label"], it["score"], wandb.Image(it["image"]),
                           wandb.Image(it["mask"] * 255), wandb.Image((normalised[k] * 255).astype(np.uint8)),
                           panel_image)  # fmt: skip
        for lg in loggers:
            with staging_inside(lg.experiment):
                lg.experiment.log({f"test/{category}/predictions": table})
