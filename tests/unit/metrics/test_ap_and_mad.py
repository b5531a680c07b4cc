"""Image and pixel average precision, and mAD (ADer's mean of seven metrics), against scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from fod_lightning.metrics.aupro import AUPRO
from fod_lightning.metrics.collection import MAD_PARTS, METRICS, AnomalyMetrics


def f1_max(labels, scores) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-300, None)
    return float(f1.max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_and_mad_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, h, w = 12, 16, 20
    labels = np.array([0] * 6 + [1] * 6)
    masks = np.zeros((n, h, w), np.uint8)
    for i in range(6, n):
        y, x = rng.integers(0, h - 5), rng.integers(0, w - 5)
        masks[i, y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = 1
    maps = rng.random((n, h, w)).astype(np.float32) + 0.8 * masks
    maps[:, :2] = np.round(maps[:, :2], 1)  # ties
    scores = maps.reshape(n, -1).max(axis=1) + rng.normal(0, 0.2, n).astype(np.float32)
    metrics = AnomalyMetrics()
    for part in (slice(0, 5), slice(5, n)):  # two batches
        metrics.update(torch.from_numpy(scores[part]), torch.from_numpy(labels[part]), torch.from_numpy(maps[part]),
                       torch.from_numpy(masks[part]))  # fmt: skip
    values = metrics.compute()
    assert set(METRICS) <= set(values)
    pixels, truth = maps.ravel().astype(np.float64), masks.ravel()
    assert values["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    assert values["pixel_ap"] == pytest.approx(average_precision_score(truth, maps.ravel()), abs=1e-6)
    expected = {
        "image_auroc": roc_auc_score(labels, scores),
        "image_ap": average_precision_score(labels, scores),
        "image_f1_max": f1_max(labels, scores),
        "pixel_auroc": roc_auc_score(truth, pixels),
        "pixel_ap": average_precision_score(truth, maps.ravel()),
        "pixel_f1_max": f1_max(truth, maps.ravel()),
    }
    aupro = AUPRO()
    aupro.update(torch.from_numpy(maps), torch.from_numpy(masks))
    expected["pixel_aupro"] = float(aupro.compute())  # tested against its own independent reference elsewhere
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, abs=1e-5), name
    assert values["mad"] == pytest.approx(np.mean([expected[m] for m in MAD_PARTS]), abs=1e-5)


def test_mad_is_not_available_without_pixel_metrics():
    metrics = AnomalyMetrics(pixel_metrics=False)
    metrics.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    values = metrics.compute()
    assert values["image_ap"] == 1.0 and np.isnan(values["mad"]) and "mad" in metrics.not_available
