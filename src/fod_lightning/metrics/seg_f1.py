"""SegF1: pixel F1 at one fixed threshold, pooled over all pixels of all images (MVTec AD 2's SegF1 as far as is
known: the server scores the 0/255 PNGs of one threshold; its code is not public, so pooling per object is an
assumption, see notes/mvtec_ad2.md section 3)."""

import warnings

import torch
from torch import Tensor
from torchmetrics import Metric


class SegF1(Metric):
    """Pixel F1 = 2 TP / (2 TP + FP + FN), a pixel predicted anomalous when its score >= ``threshold``.

    Shapes: ``preds`` float anomaly maps and ``target`` binary masks of the same shape (e.g. (N, H, W)); any
    non-zero target counts as anomalous. The states are three int64 counts summed over batches and DDP processes,
    so memory is constant and the result equals the F1 of all pixels pooled (not a mean of per-image F1).

    ``zero_division`` is the value when there is no anomalous pixel and no pixel predicted anomalous (TP = FP = FN
    = 0, F1 undefined). Default nan with a ``UserWarning``, like :class:`AUPRO` without a region; scikit-learn's
    ``f1_score`` returns 0 there. MVTec's private splits always hold defects, so the server never meets this case.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float, zero_division: float = float("nan"), **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = float(threshold)
        self.zero_division = float(zero_division)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of anomaly maps ``preds`` and binary masks ``target`` of the same shape."""
        if preds.shape != target.shape:
            raise ValueError(f"expected preds and target of the same shape, got {preds.shape}, {target.shape}")
        pred, true = preds.detach() >= self.threshold, target.bool()
        self.tp += (pred & true).sum()
        self.fp += (pred & ~true).sum()
        self.fn += (~pred & true).sum()

    def compute(self) -> Tensor:
        """Pooled pixel F1 in [0, 1] (0-dim float64 tensor); ``zero_division`` when TP + FP + FN = 0."""
        tp, fp, fn = (x.double() for x in (self.tp, self.fp, self.fn))
        denominator = 2 * tp + fp + fn
        if denominator == 0:
            if self.zero_division != self.zero_division:  # nan: say why
                warnings.warn("SegF1 is undefined without anomalous and predicted pixels; returning nan", stacklevel=2)
            return torch.tensor(self.zero_division, dtype=torch.float64)
        return 2 * tp / denominator
