"""Anomaly-detection metrics: AUROC, F1-max and AUPRO at image and pixel level."""

from fod_lightning.metrics.aupro import AUPRO
from fod_lightning.metrics.collection import AnomalyMetrics
from fod_lightning.metrics.f1_max import BinaryF1Max

__all__ = ["AUPRO", "AnomalyMetrics", "BinaryF1Max"]
