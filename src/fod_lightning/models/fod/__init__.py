"""FOD (Focus the Discrepancy, ICCV 2023) in pure torch: I2Correlation transformers, losses, scoring."""

from fod_lightning.models.base import AnomalyPrediction
from fod_lightning.models.fod.model import FOD, StageOutput

__all__ = ["FOD", "AnomalyPrediction", "StageOutput"]
