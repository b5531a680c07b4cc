"""All anomaly-detection metrics of a run behind one update/compute/reset."""

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import SumMetric

from fod_lightning.metrics.aupro import AUPRO
from fod_lightning.metrics.binned_curve import FastBinaryAUROC, FastBinaryAveragePrecision
from fod_lightning.metrics.f1_max import BinaryF1Max

# What a job records. mAD (the ADer benchmark's): the mean of the seven before it, each computed exactly here.
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max", "image_ap", "pixel_ap", "mad")
LEVEL_METRICS = {"image": ("auroc", "f1_max", "ap"), "pixel": ("auroc", "f1_max", "aupro", "ap")}
MAD_PARTS = METRICS[:7]


def _curve_pair(prefix: str, thresholds: Tensor | None) -> MetricCollection:
    """AUROC, F1-max and average precision of one level sharing one stored score state (one compute group)."""
    metrics = {
        f"{prefix}_auroc": FastBinaryAUROC(thresholds=thresholds, normalization=None),
        f"{prefix}_f1_max": BinaryF1Max(thresholds=thresholds),
        f"{prefix}_ap": FastBinaryAveragePrecision(thresholds=thresholds),
    }
    return MetricCollection(metrics, compute_groups=[list(metrics)])


class AnomalyMetrics(nn.Module):
    """image_auroc, image_f1_max, image_ap and (with ``pixel_metrics``) pixel_auroc, pixel_f1_max, pixel_aupro,
    pixel_ap; ``mad``, their mean (nan unless all seven are available); and num_images: how many images were scored
    (over all processes; under DDP each image must count once). AP is torchmetrics' step-wise average precision,
    equal to scikit-learn's ``average_precision_score`` (tested).

    Shapes: ``image_scores`` (N,), ``labels`` (N,) in {0, 1}, ``anomaly_maps`` (N, H, W), ``masks`` (N, H, W) in
    {0, 1}. Scores are used raw (no sigmoid). Image metrics are always exact. Pixel metrics are exact when
    ``binned_pixel_thresholds`` is None (memory per pixel: 4 B score + 1 B mask shared by AUROC/F1, plus 4 B per
    normal / 8 B per anomalous pixel for AUPRO); with an int K they use K thresholds ``linspace(*score_range, K)``
    on maps clipped to ``score_range`` (constant memory). The F1-max thresholds are available after ``compute``
    as ``image_threshold`` / ``pixel_threshold``.

    A level's metrics need both classes: without an anomalous (or a normal) image, or pixel, they are nan, and
    after ``compute`` ``not_available`` maps each such metric to the reason (e.g. a category whose test split
    has no anomalous image); a warning says so once per reason.
    """

    def __init__(
        self,
        pixel_metrics: bool = True,
        binned_pixel_thresholds: int | None = None,
        score_range: tuple[float, float] = (0.0, 1.0),
        aupro_fpr_limit: float = 0.3,
    ) -> None:
        super().__init__()
        self.pixel_metrics = pixel_metrics
        self.binned = binned_pixel_thresholds is not None
        self.score_range = score_range
        self.image = _curve_pair("image", None)
        self.image_count = SumMetric()
        self.anomalous_images = SumMetric()
        if pixel_metrics:
            thresholds = torch.linspace(*score_range, binned_pixel_thresholds) if self.binned else None
            self.pixel = _curve_pair("pixel", thresholds)
            self.pixel_aupro = AUPRO(aupro_fpr_limit, num_thresholds=binned_pixel_thresholds, score_range=score_range)
            self.pixel_count = SumMetric()
            self.anomalous_pixels = SumMetric()
        self.not_available: dict[str, str] = {}
        self._warned: set[str] = set()

    def update(
        self, image_scores: Tensor, labels: Tensor, anomaly_maps: Tensor | None = None, masks: Tensor | None = None
    ) -> None:
        """Add a batch; ``anomaly_maps`` and ``masks`` are required only with ``pixel_metrics``."""
        self.image.update(image_scores.detach().flatten(), labels.flatten().bool())
        self.image_count.update(float(image_scores.numel()))
        self.anomalous_images.update(labels.bool().sum())  # a tensor: no device sync per batch
        if not self.pixel_metrics:
            return
        if anomaly_maps is None or masks is None:
            raise ValueError("pixel_metrics=True needs anomaly_maps and masks")
        maps, masks = anomaly_maps.detach(), masks.bool()
        if self.binned:
            maps = maps.clamp(*self.score_range)
        self.pixel.update(maps.flatten(), masks.flatten())
        self.pixel_aupro.update(maps, masks)
        self.pixel_count.update(float(masks.numel()))
        self.anomalous_pixels.update(masks.sum())

    def compute(self) -> dict[str, float]:
        """Metric name -> value (nan where not available: see ``not_available``)."""
        self.not_available = {}
        # The counts are synchronised first, so that every process takes the same branch.
        num_images = float(self.image_count.compute())
        values = self._level("image", num_images, self.anomalous_images, self.image.compute)
        values["num_images"] = num_images
        if self.pixel_metrics:
            pixels = float(self.pixel_count.compute())
            values |= self._level("pixel", pixels, self.anomalous_pixels, self._pixel_values)
        parts = [values.get(m, math.nan) for m in MAD_PARTS]
        values["mad"] = sum(parts) / len(parts) if all(math.isfinite(v) for v in parts) else math.nan
        if not math.isfinite(values["mad"]):
            self.not_available["mad"] = "mAD needs all seven of " + ", ".join(MAD_PARTS)
        return values

    def _pixel_values(self) -> dict:
        return {**self.pixel.compute(), "pixel_aupro": self.pixel_aupro.compute()}

    def _level(self, level: str, total: float, anomalous: SumMetric, compute: Callable[[], dict]) -> dict[str, float]:
        """The metrics of ``level`` (image or pixel), or nan for each with the reason when a class is missing."""
        reason = _missing_class(level, total, float(anomalous.compute()))
        if reason is None:
            return {k: float(v) for k, v in compute().items()}
        names = [f"{level}_{m}" for m in LEVEL_METRICS[level]]
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"{', '.join(names)} not available: {reason}", stacklevel=3)
        self.not_available |= dict.fromkeys(names, reason)
        return dict.fromkeys(names, math.nan)

    def reset(self) -> None:
        """Clear all states."""
        self.image.reset()
        self.image_count.reset()
        self.anomalous_images.reset()
        if self.pixel_metrics:
            self.pixel.reset()
            self.pixel_aupro.reset()
            self.pixel_count.reset()
            self.anomalous_pixels.reset()

    @property
    def image_threshold(self) -> float | None:
        """Image score threshold of the max image F1 (after ``compute``)."""
        return _threshold(self.image.get_submodule("image_f1_max"))

    @property
    def pixel_threshold(self) -> float | None:
        """Pixel score threshold of the max pixel F1 (after ``compute``)."""
        return _threshold(self.pixel.get_submodule("pixel_f1_max")) if self.pixel_metrics else None


def _missing_class(level: str, total: float, anomalous: float) -> str | None:
    """Why the metrics of ``level`` (image or pixel) are undefined, or None when both classes are present."""
    if total == 0:
        return f"no {level} was scored"
    if 0 < anomalous < total:
        return None
    count = f" {total:.0f}" if level == "image" else ""  # pixel counts are float32 sums: not exact
    found = f"all{count} scored {level}s are" if anomalous else f"none of the{count} scored {level}s is"
    empty = " (the masks are empty)" if level == "pixel" and not anomalous else ""
    return f"{found} anomalous{empty}: the metric needs both normal and anomalous {level}s"


def _threshold(metric: nn.Module) -> float | None:
    return None if metric.threshold is None else float(metric.threshold)
