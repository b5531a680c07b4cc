"""Metrics against independent brute-force references and hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from fod_lightning.metrics import AUPRO, AnomalyMetrics, BinaryF1Max
from fod_lightning.metrics.collection import METRICS

EIGHT = np.ones((3, 3), dtype=int)
FOUR = ndimage.generate_binary_structure(2, 1)


def reference_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3, structure=EIGHT) -> float:
    """Straightforward AUPRO: threshold at every distinct score, regions by scipy labelling."""
    masks = masks.astype(bool)
    labels = np.zeros(masks.shape, dtype=np.int64)
    num = 0
    for i, m in enumerate(masks):  # globally unique region ids over images
        lab, n = ndimage.label(m, structure=structure)
        labels[i] = np.where(lab > 0, lab + num, 0)
        num += n
    sizes = np.bincount(labels.ravel(), minlength=num + 1)[1:]
    normal = ~masks
    fpr, pro = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        fpr.append((pred & normal).sum() / normal.sum())
        pro.append(np.mean(np.bincount(labels[pred], minlength=num + 1)[1:] / sizes))
        if fpr[-1] > limit:
            break
    fpr, pro = np.array(fpr), np.array(pro)
    if fpr[-1] > limit:  # replace the last point by the interpolated one at the limit
        x0, x1, y0, y1 = fpr[-2], fpr[-1], pro[-2], pro[-1]
        fpr[-1], pro[-1] = limit, y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
    return float(np.trapezoid(pro, fpr) / limit)


def random_case(seed: int, n: int = 6, size: int = 32, decimals: int | None = None):
    """Maps and masks with random rectangles, diagonally touching pixel pairs and some normal images."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n - 2):  # the last two images are normal
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, size - 6, 2)
            h, w = rng.integers(1, 7, 2)
            masks[i, y : y + h, x : x + w] = True
        y, x = rng.integers(1, size - 2, 2)  # a diagonal chain: one region only under 8-connectivity
        masks[i, y, x] = masks[i, y + 1, x + 1] = True
    maps = rng.random(masks.shape) + 0.6 * masks * rng.random(masks.shape)
    if decimals is not None:  # many ties
        maps = np.round(maps, decimals)
    return maps.astype(np.float32), masks


def aupro(maps, masks, **kwargs) -> float:
    metric = AUPRO(**kwargs)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks))
    return float(metric.compute())


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, None), (2, 2), (3, 1)])
def test_aupro_matches_reference(seed, decimals):
    maps, masks = random_case(seed, decimals=decimals)
    expected = reference_aupro(maps, masks)
    assert 0.1 < expected < 0.99
    assert aupro(maps, masks) == pytest.approx(expected, abs=1e-6)


def test_aupro_batches_and_merged_states_equal_one_update():
    maps, masks = random_case(4)
    expected = reference_aupro(maps, masks)
    split = AUPRO()
    for i in range(len(maps)):  # region ids never needed to be unique across updates
        split.update(torch.from_numpy(maps[i : i + 1]), torch.from_numpy(masks[i : i + 1]))
    assert float(split.compute()) == pytest.approx(expected, abs=1e-6)
    a, b = AUPRO(), AUPRO()  # what a DDP "cat"/"sum" reduction does
    a.update(torch.from_numpy(maps[:3]), torch.from_numpy(masks[:3]))
    b.update(torch.from_numpy(maps[3:]), torch.from_numpy(masks[3:]))
    a.merge_state(b)
    assert float(a.compute()) == pytest.approx(expected, abs=1e-6)
    synced = AUPRO()  # after a DDP sync every "cat" list state is one tensor
    synced.update(torch.from_numpy(maps), torch.from_numpy(masks))
    for name in ("normal_scores", "anomal_scores", "anomal_sizes"):
        setattr(synced, name, torch.cat(getattr(synced, name)))
    assert float(synced.compute()) == pytest.approx(expected, abs=1e-6)


def test_aupro_hand_computed_with_tie_and_interpolation():
    # Region A = top-left 2x2 (scores .9 .9 .8 .4), region B = bottom-right pixel (.7), 11 normal pixels.
    # The normal .4 ties with A's .4. Curve (FPR, PRO): (0, 0) -> t=.9 (0, .25) -> t=.85 (1/11, .25)
    # -> t=.8 (1/11, .375) -> t=.7 (1/11, .875) -> t=.6 (2/11, .875) -> t=.5 (3/11, .875) -> t=.4 (4/11, 1).
    # At FPR .3: PRO = .875 + .125 * (.3 - 3/11) / (1/11) = .9125.
    # Area = .25/11 + .875 * 2/11 + (.875 + .9125) / 2 * (.3 - 3/11) = 2.268125 / 11; AUPRO = area / .3.
    maps = torch.tensor(
        [[[0.9, 0.9, 0.85, 0.6], [0.8, 0.4, 0.5, 0.4], [0.2, 0.1, 0.05, 0.04], [0.03, 0.02, 0.01, 0.7]]]
    )
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, :2, :2] = 1
    masks[0, 3, 3] = 1
    metric = AUPRO()
    metric.update(maps, masks)
    expected = 2.268125 / 11 / 0.3
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-9)
    assert reference_aupro(maps.numpy(), masks.numpy()) == pytest.approx(expected, abs=1e-9)


def test_aupro_eight_connectivity():
    # Anomalous pixels (0,0), (1,1), (1,2); only (0,0) is detected, the rest scores lowest.
    # 8-connectivity: one region of 3 pixels, PRO = 1/3 from FPR 0 to 1 -> AUPRO = 1/3.
    # 4-connectivity would give regions {(0,0)}, {(1,1),(1,2)}: PRO = (1 + 0) / 2 -> 0.5.
    masks = np.zeros((1, 3, 3), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = np.where(masks, 0.0, np.linspace(0.2, 0.7, 9).reshape(1, 3, 3)).astype(np.float32)
    maps[0, 0, 0] = 1.0
    assert aupro(maps, masks) == pytest.approx(1 / 3, abs=1e-9)
    assert reference_aupro(maps, masks, structure=FOUR) == pytest.approx(0.5, abs=1e-9)
    maps, masks = random_case(5)
    assert reference_aupro(maps, masks, structure=FOUR) != pytest.approx(aupro(maps, masks), abs=1e-4)


def test_aupro_perfect_and_degenerate():
    _, masks = random_case(6)
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro(1 - masks.astype(np.float32), masks) == pytest.approx(0.0, abs=1e-12)
    empty = np.zeros((2, 8, 8), dtype=bool)
    with pytest.warns(UserWarning, match="ground-truth region"):
        assert np.isnan(aupro(np.random.rand(2, 8, 8).astype(np.float32), empty))


@pytest.mark.parametrize("seed", [7, 8])
def test_aupro_binned_close_to_exact(seed):
    maps, masks = random_case(seed, n=10, size=48)
    maps = maps / maps.max()  # into the default score range [0, 1]
    exact = aupro(maps, masks)
    metric = AUPRO(num_thresholds=1000)
    for i in range(0, len(maps), 3):
        metric.update(torch.from_numpy(maps[i : i + 3]), torch.from_numpy(masks[i : i + 3]))
    binned = float(metric.compute())
    assert binned == pytest.approx(exact, abs=2e-3)
    assert aupro(maps, masks, num_thresholds=10) != pytest.approx(exact, abs=1e-4)  # the bins do matter


def test_aupro_binned_is_exact_when_scores_lie_on_the_thresholds():
    maps, masks = random_case(11)
    maps = np.round(maps / maps.max() * 4) / 4  # scores in {0, .25, .5, .75, 1} = linspace(0, 1, 5)
    assert aupro(maps, masks, num_thresholds=5) == pytest.approx(reference_aupro(maps, masks), abs=1e-9)
    assert aupro(maps, masks, num_thresholds=9) == pytest.approx(reference_aupro(maps, masks), abs=1e-9)


def brute_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = (pred & labels).sum()
        best = max(best, 2 * tp / (pred.sum() + labels.sum()))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_max_matches_brute_force_with_raw_scores(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + labels, 1).astype(np.float32)  # ties and values outside [0, 1]
    metric = BinaryF1Max()
    metric.update(torch.from_numpy(np.clip(scores[:100], 0, 1)), torch.from_numpy(labels[:100]))  # a [0, 1] batch
    metric.update(torch.from_numpy(scores[100:]), torch.from_numpy(labels[100:]))
    scores[:100] = np.clip(scores[:100], 0, 1)
    expected = brute_f1_max(scores, labels)
    assert float(metric.compute()) == pytest.approx(expected, abs=1e-6)
    pred = scores >= float(metric.threshold)
    assert 2 * (pred & labels).sum() / (pred.sum() + labels.sum()) == pytest.approx(expected, abs=1e-6)
    metric.reset()
    assert metric.threshold is None


def test_anomaly_metrics_exact_against_references():
    maps, masks = random_case(9, n=8)
    maps[:4] *= 3.0  # raw scores: one batch outside [0, 1], one inside; a batch-wise sigmoid breaks rankings
    maps[4:] /= maps[4:].max()
    labels = masks.any(axis=(1, 2))
    image_scores = maps.reshape(len(maps), -1).max(axis=1)
    metrics = AnomalyMetrics()
    for i in range(0, 8, 4):
        s = slice(i, i + 4)
        metrics.update(*(torch.from_numpy(a[s]) for a in (image_scores, labels, maps, masks)))
    values = metrics.compute()
    assert set(values) == {*METRICS, "num_images"}
    assert values["num_images"] == 8
    assert values["image_auroc"] == pytest.approx(roc_auc_score(labels, image_scores), abs=1e-6)
    assert values["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-6)
    assert values["image_f1_max"] == pytest.approx(brute_f1_max(image_scores, labels), abs=1e-6)
    assert values["pixel_f1_max"] == pytest.approx(brute_f1_max(maps.ravel(), masks.ravel()), abs=1e-6)
    assert values["pixel_aupro"] == pytest.approx(reference_aupro(maps, masks), abs=1e-6)
    assert metrics.pixel_threshold is not None and metrics.image_threshold is not None
    metrics.reset()
    assert metrics.pixel_threshold is None


def test_anomaly_metrics_binned_and_image_only():
    maps, masks = random_case(10, n=8)
    maps = maps / maps.max()
    labels = masks.any(axis=(1, 2))
    image_scores = maps.reshape(len(maps), -1).mean(axis=1)
    tensors = [torch.from_numpy(a) for a in (image_scores, labels, maps, masks)]
    exact, binned = AnomalyMetrics(), AnomalyMetrics(binned_pixel_thresholds=1000)
    exact.update(*tensors)
    binned.update(*tensors)
    e, b = exact.compute(), binned.compute()
    for key in ("pixel_auroc", "pixel_f1_max", "pixel_aupro", "pixel_ap", "mad"):
        assert b[key] == pytest.approx(e[key], abs=2e-3), key
    image_only = AnomalyMetrics(pixel_metrics=False)
    image_only.update(*tensors[:2])
    values = image_only.compute()
    assert set(values) == {"image_auroc", "image_f1_max", "image_ap", "mad", "num_images"}
    assert math.isnan(values["mad"]) and image_only.not_available["mad"].startswith("mAD needs all seven")
    assert image_only.pixel_threshold is None
