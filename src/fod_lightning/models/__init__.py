"""Pure torch anomaly models (tensors in, scores and maps out) and the frozen backbone they share."""

from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.base import AnomalyNet, AnomalyPrediction
from fod_lightning.models.fod.model import FOD, StageOutput

__all__ = ["FOD", "AnomalyNet", "AnomalyPrediction", "FeatureExtractor", "StageOutput"]
