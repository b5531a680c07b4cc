"""All anomaly-detection metrics of a run behind one update/compute/reset."""

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import BinaryAUROC

from fod_lightning.metrics.aupro import AUPRO
from fod_lightning.metrics.f1_max import BinaryF1Max


def _curve_pair(prefix: str, thresholds: Tensor | None) -> MetricCollection:
    """AUROC and F1-max of one level sharing one stored score state (one compute group)."""
    metrics = {
        f"{prefix}_auroc": BinaryAUROC(thresholds=thresholds, normalization=None),
        f"{prefix}_f1_max": BinaryF1Max(thresholds=thresholds),
    }
    return MetricCollection(metrics, compute_groups=[list(metrics)])


class AnomalyMetrics(nn.Module):
    """image_auroc, image_f1_max and (with ``pixel_metrics``) pixel_auroc, pixel_f1_max, pixel_aupro, and
    num_images: how many images were scored (over all processes; under DDP each image must count once).

    Shapes: ``image_scores`` (N,), ``labels`` (N,) in {0, 1}, ``anomaly_maps`` (N, H, W), ``masks`` (N, H, W) in
    {0, 1}. Scores are used raw (no sigmoid). Image metrics are always exact. Pixel metrics are exact when
    ``binned_pixel_thresholds`` is None (memory per pixel: 4 B score + 1 B mask shared by AUROC/F1, plus 4 B per
    normal / 8 B per anomalous pixel for AUPRO); with an int K they use K thresholds ``linspace(*score_range, K)``
    on maps clipped to ``score_range`` (constant memory). The F1-max thresholds are available after ``compute``
    as ``image_threshold`` / ``pixel_threshold``.
    """

    def __init__(
        self,
        pixel_metrics: bool = True,
        binned_pixel_thresholds: int | None = None,
        score_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        self.pixel_metrics = pixel_metrics
        self.binned = binned_pixel_thresholds is not None
        self.score_range = score_range
        self.image = _curve_pair("image", None)
        self.image_count = SumMetric()
        if pixel_metrics:
            thresholds = torch.linspace(*score_range, binned_pixel_thresholds) if self.binned else None
            self.pixel = _curve_pair("pixel", thresholds)
            self.pixel_aupro = AUPRO(num_thresholds=binned_pixel_thresholds, score_range=score_range)

    def update(
        self, image_scores: Tensor, labels: Tensor, anomaly_maps: Tensor | None = None, masks: Tensor | None = None
    ) -> None:
        """Add a batch; ``anomaly_maps`` and ``masks`` are required only with ``pixel_metrics``."""
        self.image.update(image_scores.detach().flatten(), labels.flatten().bool())
        self.image_count.update(float(image_scores.numel()))
        if not self.pixel_metrics:
            return
        if anomaly_maps is None or masks is None:
            raise ValueError("pixel_metrics=True needs anomaly_maps and masks")
        maps, masks = anomaly_maps.detach(), masks.bool()
        if self.binned:
            maps = maps.clamp(*self.score_range)
        self.pixel.update(maps.flatten(), masks.flatten())
        self.pixel_aupro.update(maps, masks)

    def compute(self) -> dict[str, float]:
        """Metric name -> value."""
        values = {k: float(v) for k, v in self.image.compute().items()}
        values["num_images"] = float(self.image_count.compute())
        if self.pixel_metrics:
            values.update({k: float(v) for k, v in self.pixel.compute().items()})
            values["pixel_aupro"] = float(self.pixel_aupro.compute())
        return values

    def reset(self) -> None:
        """Clear all states."""
        self.image.reset()
        self.image_count.reset()
        if self.pixel_metrics:
            self.pixel.reset()
            self.pixel_aupro.reset()

    @property
    def image_threshold(self) -> float | None:
        """Image score threshold of the max image F1 (after ``compute``)."""
        return _threshold(self.image.get_submodule("image_f1_max"))

    @property
    def pixel_threshold(self) -> float | None:
        """Pixel score threshold of the max pixel F1 (after ``compute``)."""
        return _threshold(self.pixel.get_submodule("pixel_f1_max")) if self.pixel_metrics else None


def _threshold(metric: nn.Module) -> float | None:
    return None if metric.threshold is None else float(metric.threshold)
