"""The evaluation of one model: validation and test metrics, the best validation epochs, per-defect numbers."""

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fod_lightning.metrics.collection import METRICS, AnomalyMetrics
from fod_lightning.metrics.defects import defect_metrics

STAGES = ("val", "test")
NO_MASKS = "no ground-truth masks: pixel metrics skipped"


class Evaluator(nn.Module):
    """Owns the metrics of the ``val`` and ``test`` passes and everything a job records of them.

    Per pass, :meth:`update` takes each batch's predictions and :meth:`compute` gives the metric values (see
    :class:`AnomalyMetrics`). Validation also keeps, per metric, the best value and its epoch; the test pass keeps
    every prediction (score, map, label, mask, defect type, path) for the per-defect numbers and the pictures.
    Under DDP each process scores its share; the metrics synchronise themselves, and the test predictions are
    gathered on rank zero (in the order of one process: defect type, then path).

    Args:
        binned_pixel_thresholds: None for exact pixel metrics, or K thresholds over ``pixel_score_range``.
        aupro_fpr_limit: the false-positive rate AUPRO integrates to (0.3; MVTec AD 2: 0.05).
    """

    def __init__(self, binned_pixel_thresholds: int | None = None, pixel_score_range=(0.0, 1.0),
                 aupro_fpr_limit: float = 0.3) -> None:  # fmt: skip
        super().__init__()
        self.aupro_fpr_limit = float(aupro_fpr_limit)
        self.binned_pixel_thresholds = binned_pixel_thresholds
        self.pixel_score_range = tuple(float(v) for v in pixel_score_range)
        self.metrics = nn.ModuleDict()
        self.has_masks = True
        self.values: dict[str, dict[str, float]] = {}  # stage -> the last computed values
        self.not_available: dict[str, dict[str, str]] = {}  # stage -> metric -> why it is nan
        self.f1_thresholds: dict[str, float | None] = {}  # F1-max thresholds of the last validation
        self.best: dict[str, tuple[float, int]] = {}  # "val/<metric>" -> (value, epoch)
        self.predictions: list[dict] = []  # the test pass's, see update
        self.defects: dict[str, dict] = {}
        self.score_seconds = 0.0  # the test pass's scoring time (this process; data loading excluded)

    def setup(self, has_masks: bool, device: torch.device) -> None:
        """Metrics for data with or without masks (classification-only folders have none: no pixel metrics)."""
        self.has_masks = has_masks
        for stage in STAGES:
            if stage not in self.metrics or self.metrics[stage].pixel_metrics != has_masks:
                self.metrics[stage] = AnomalyMetrics(
                    has_masks, self.binned_pixel_thresholds, self.pixel_score_range, self.aupro_fpr_limit
                ).to(device)

    def start(self, stage: str) -> None:
        if stage == "test":
            self.predictions, self.defects, self.score_seconds = [], {}, 0.0

    def update(self, stage: str, image_score: torch.Tensor, anomaly_map: torch.Tensor, batch,
               seconds: float = 0.0) -> None:  # fmt: skip
        """One batch: ``image_score`` (B,), ``anomaly_map`` (B, H, W) and the :class:`~fod_lightning.data.batch.Batch`
        they score (labels, masks, defect types, paths); ``seconds``: how long scoring it took."""
        self.metrics[stage].update(image_score, batch.label, anomaly_map, batch.mask)
        if stage != "test":
            return
        self.score_seconds += seconds
        scores, maps = image_score.float().cpu().numpy(), anomaly_map.float().cpu().numpy()
        masks, labels = batch.mask.cpu().numpy(), batch.label.cpu().numpy()
        for i in range(len(batch)):
            item = {"score": float(scores[i]), "map": maps[i], "label": int(labels[i]), "mask": masks[i]}
            self.predictions.append(item | {"path": batch.path[i], "defect": batch.defect_type[i]})

    def compute(self, stage: str, epoch: int, track_best: bool = True) -> dict[str, float]:
        """The metric values of the pass (synchronised across processes), then a reset. Validation: the best values
        are updated (unless ``track_best`` is off, e.g. Lightning's sanity check); test: the per-defect numbers."""
        metrics = self.metrics[stage]
        values = metrics.compute()
        self.not_available[stage] = dict(metrics.not_available)
        if stage == "val":
            self.f1_thresholds = {"image": metrics.image_threshold, "pixel": metrics.pixel_threshold}
        metrics.reset()
        self.values[stage] = values
        if stage == "val" and track_best:
            for name, value in values.items():
                key = f"val/{name}"
                if key not in self.best or value > self.best[key][0]:
                    self.best[key] = (float(value), epoch)
        if stage == "test":
            self.predictions = gathered(self.predictions)
            if self.predictions:
                self.defects = self.defect_numbers()
        return values

    def defect_numbers(self) -> dict[str, dict]:
        items = self.predictions
        masks = np.stack([it["mask"] for it in items])
        masks = masks if self.has_masks else np.zeros_like(masks)
        return defect_metrics(np.array([it["score"] for it in items]), np.array([it["label"] for it in items]),
                              np.stack([it["map"] for it in items]), masks,
                              [it["defect"] for it in items], self.aupro_fpr_limit)  # fmt: skip

    def results(self) -> dict:
        """What a job records: the test metrics (top level, with ``num_images``), the last validation (``val``),
        the best validation epochs (``best``), ``defects``, ``not_available``, a ``note`` without masks, and
        ``cost``: the scoring time per test image (the network's forward and scoring, no data loading)."""
        test = self.values.get("test", {})
        record = {k: float(v) for k, v in test.items() if k in METRICS}
        if test:
            record["num_images"] = int(test.get("num_images", 0))  # scored test images, all processes
            if self.predictions:  # rank zero: its share of the images and of the time
                record["cost"] = {"score_seconds_per_image": round(self.score_seconds / len(self.predictions), 5)}
        record["val"] = {k: float(v) for k, v in self.values.get("val", {}).items() if k in METRICS}
        record["best"] = {k.removeprefix("val/"): {"value": v, "epoch": e} for k, (v, e) in self.best.items()
                          if k.removeprefix("val/") in METRICS}  # fmt: skip
        if self.defects:
            record["defects"] = self.defects
        if self.not_available.get("test"):
            record["not_available"] = dict(self.not_available["test"])
        if not self.has_masks:
            record["note"] = NO_MASKS
        record["aupro_fpr_limit"] = self.aupro_fpr_limit
        return record


def gathered(items: list[dict]) -> list[dict]:
    """Every process's items on rank zero (empty elsewhere), in the one-process order (defect type, path); the
    items themselves with one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    zero = dist.get_rank() == 0
    shards = [None] * dist.get_world_size() if zero else None
    dist.gather_object(items, shards, dst=0)
    if not zero:
        return []
    return sorted((it for shard in shards for it in shard), key=lambda it: (it["defect"], it["path"]))
