"""Pure torch anomaly models (tensors in, scores and maps out) and the frozen backbone they share. Each model is its own
module (``patchcore``, ``padim``) or package (``fod``), imported where it is used."""

from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.base import AnomalyNet, AnomalyPrediction

__all__ = ["AnomalyNet", "AnomalyPrediction", "FeatureExtractor"]
