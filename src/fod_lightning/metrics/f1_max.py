"""Threshold-free F1: the maximum F1 over all decision thresholds."""

import torch
from torch import Tensor
from torchmetrics.classification import BinaryPrecisionRecallCurve

from fod_lightning.metrics.binned_curve import FastBinnedUpdate


class BinaryF1Max(FastBinnedUpdate, BinaryPrecisionRecallCurve):
    """Max F1 over thresholds (a sample is positive when its score >= threshold), for any score scale.

    Inputs as :class:`~torchmetrics.classification.BinaryPrecisionRecallCurve`: scores (N, ...) and binary
    labels (N, ...), flattened. Unlike that class the default is ``normalization=None``: raw anomaly scores are
    used as they are (no batch-wise sigmoid). ``thresholds=None`` is exact (stores all scores); an int K uses
    ``linspace(0, 1, K)`` and a tensor uses the given thresholds (scores should then lie in their range).

    Binned updates in O(n log K) (:mod:`~fod_lightning.metrics.binned_curve`). After :meth:`compute`, ``threshold``
    holds the threshold reaching the max F1 (None before, or after reset).
    """

    higher_is_better = True

    def __init__(self, thresholds: int | list[float] | Tensor | None = None, **kwargs) -> None:
        kwargs.setdefault("normalization", None)
        super().__init__(thresholds=thresholds, **kwargs)
        self.threshold: Tensor | None = None

    def compute(self) -> Tensor:
        """Max F1 (0-dim tensor); also sets ``self.threshold``."""
        precision, recall, thresholds = super().compute()
        # the last (precision, recall) pair is the (1, 0) end point without a threshold
        f1 = (2 * precision * recall / (precision + recall))[:-1].nan_to_num(0.0)
        best = torch.argmax(f1)
        self.threshold = thresholds[best]
        return f1[best]

    def reset(self) -> None:
        """Reset the states and the threshold."""
        super().reset()
        self.threshold = None
