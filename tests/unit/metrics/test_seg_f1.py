"""SegF1 against scikit-learn's F1 of all pixels pooled, and its edge cases."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from torchmetrics.utilities.data import dim_zero_sum

from fod_lightning.metrics.seg_f1 import SegF1


def pooled_f1(maps: list[np.ndarray], masks: list[np.ndarray], threshold: float) -> float:
    pred = np.concatenate([(m >= threshold).ravel() for m in maps])
    true = np.concatenate([(m > 0).ravel() for m in masks])
    return f1_score(true, pred, zero_division=0.0)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.9])
def test_equals_sklearn_on_pooled_pixels_over_batches_of_several_shapes(threshold):
    rng = np.random.default_rng(0)
    shapes = [(2, 45, 61), (3, 17, 9), (1, 61, 45)]
    masks = [rng.random(s) < 0.1 for s in shapes]
    maps = [(rng.random(s) * 0.7 + 0.3 * m).astype(np.float32) for s, m in zip(shapes, masks)]
    metric = SegF1(threshold)
    for p, t in zip(maps, masks):
        metric.update(torch.from_numpy(p), torch.from_numpy(t.astype(np.uint8) * 255))  # 0/255 masks count as 1
    assert metric.compute().item() == pytest.approx(pooled_f1(maps, masks, threshold), abs=1e-12)


def test_score_equal_to_the_threshold_is_anomalous():
    metric = SegF1(0.5)
    metric.update(torch.tensor([[0.5, 0.4999]]), torch.tensor([[1, 1]]))
    assert metric.compute().item() == pytest.approx(2 / 3)  # TP 1, FN 1


def test_pooled_not_a_mean_of_per_image_f1():
    metric = SegF1(0.5)
    metric.update(torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), torch.tensor([[[1, 0, 0, 0]]]))  # F1 1
    metric.update(torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]), torch.tensor([[[1, 1, 1, 0]]]))  # F1 0
    assert metric.compute().item() == pytest.approx(2 * 1 / (2 * 1 + 1 + 3))  # TP 1, FP 1, FN 3, not 0.5


def test_one_sided_empty_cases_are_zero():
    no_defect_but_predictions = SegF1(0.5)
    no_defect_but_predictions.update(torch.tensor([[0.9, 0.1]]), torch.tensor([[0, 0]]))
    defect_missed = SegF1(0.5)
    defect_missed.update(torch.tensor([[0.1, 0.1]]), torch.tensor([[1, 0]]))
    assert no_defect_but_predictions.compute().item() == 0.0
    assert defect_missed.compute().item() == 0.0


def test_no_defect_and_no_prediction_is_nan_with_a_warning_or_the_chosen_value():
    metric = SegF1(0.5)
    metric.update(torch.zeros(2, 5, 7), torch.zeros(2, 5, 7))
    with pytest.warns(UserWarning, match="undefined"):
        assert math.isnan(metric.compute().item())
    as_sklearn = SegF1(0.5, zero_division=0.0)
    as_sklearn.update(torch.zeros(2, 5, 7), torch.zeros(2, 5, 7))
    assert as_sklearn.compute().item() == 0.0


def test_counts_are_summable_states_and_reset():
    metric = SegF1(0.5)
    assert all(metric._reductions[name] is dim_zero_sum for name in ("tp", "fp", "fn"))
    metric.update(torch.tensor([[0.9, 0.9, 0.1]]), torch.tensor([[1, 0, 1]]))
    assert (metric.tp.item(), metric.fp.item(), metric.fn.item()) == (1, 1, 1)
    metric.reset()
    assert (metric.tp.item(), metric.fp.item(), metric.fn.item()) == (0, 0, 0)
