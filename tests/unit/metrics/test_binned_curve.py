"""The binned curves' fast update builds torchmetrics' own confusion matrices (its loop over thresholds and its
vectorised form), ties at thresholds, NaN scores and float64 scores included, and so the same metrics."""

import pytest
import torch
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision
from torchmetrics.functional.classification.precision_recall_curve import (
    _binary_precision_recall_curve_update_loop,
    _binary_precision_recall_curve_update_vectorized,
)

from fod_lightning.metrics.binned_curve import FastBinaryAUROC, FastBinaryAveragePrecision, binned_confmat
from fod_lightning.metrics.f1_max import BinaryF1Max


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_confusion_matrices_equal_torchmetrics(dtype):
    generator = torch.Generator().manual_seed(0)
    thresholds = torch.linspace(0, 1, 101)
    preds = torch.rand(5000, generator=generator).to(dtype)
    preds[:500] = thresholds[torch.randint(0, 101, (500,), generator=generator)].to(dtype)  # exactly at thresholds
    preds[500:520] = torch.tensor([-1.0, 2.0]).repeat(10).to(dtype)  # below and above every threshold
    target = torch.rand(5000, generator=generator) < 0.3
    fast = binned_confmat(preds, target, thresholds)
    assert torch.equal(fast, _binary_precision_recall_curve_update_loop(preds, target.long(), thresholds))
    assert torch.equal(fast, _binary_precision_recall_curve_update_vectorized(preds, target.long(), thresholds))
    preds[0] = float("nan")  # positive at no threshold, as torchmetrics' comparison
    assert torch.equal(binned_confmat(preds, target, thresholds),
                       _binary_precision_recall_curve_update_loop(preds, target.long(), thresholds))  # fmt: skip


def test_the_metrics_equal_torchmetrics_over_several_updates():
    generator = torch.Generator().manual_seed(1)
    pairs = [(BinaryAUROC, FastBinaryAUROC), (BinaryAveragePrecision, FastBinaryAveragePrecision)]
    for theirs_cls, ours_cls in pairs:
        theirs, ours = theirs_cls(thresholds=1000), ours_cls(thresholds=1000)
        for n in (60_000, 300, 80_000):  # above and below torchmetrics' 50,000 switch
            preds, target = torch.rand(n, generator=generator), torch.rand(n, generator=generator) < 0.1
            preds[target] = preds[target].sqrt()
            theirs.update(preds, target.long())
            ours.update(preds, target.long())
        assert torch.equal(theirs.confmat, ours.confmat) and float(theirs.compute()) == float(ours.compute())
    f1 = BinaryF1Max(thresholds=1000)
    preds, target = torch.rand(70_000, generator=generator), torch.rand(70_000, generator=generator) < 0.2
    f1.update(preds, target)
    reference = _binary_precision_recall_curve_update_loop(preds, target.long(), torch.linspace(0, 1, 1000))
    assert torch.equal(f1.confmat, reference)
