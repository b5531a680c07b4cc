"""Pure torch FOD model: backbone, I2Correlation transformers, losses, scoring."""

from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod import FOD, AnomalyPrediction, StageOutput

__all__ = ["FOD", "AnomalyPrediction", "FeatureExtractor", "StageOutput"]
