"""AUPRO equals MVTec's AU-PRO (the public MVTec AD evaluation code, which MVTec AD 2 uses with a 0.05 limit).

The reference below is written from that code's definition (notes/mvtec_ad2.md section 3), brute force:
- regions: 8-connected components of each mask (any non-zero pixel is foreground), weighted equally;
- thresholds: every distinct score of all images pooled, a pixel positive when its score >= the threshold;
- FPR over all anomaly-free pixels of all images, PRO the mean over regions of the region's recall;
- the curve bracketed by (0, 0) and (1, 1), values clipped to <= 1, integrated by trapezoids up to the limit with
  the PRO linearly interpolated there, the area divided by the limit.
MVTec's code stores the FPRs as float32; ``fpr_dtype=np.float32`` reproduces that rounding, which is why it is
compared at a looser tolerance.
"""

import numpy as np
import pytest
import torch
from scipy import ndimage

from fod_lightning.metrics import AUPRO

EIGHT = np.ones((3, 3), dtype=int)


def integrate_to(xs: list[float], ys: list[float], limit: float) -> float:
    """Trapezoid area of the polyline (xs, ys) from xs[0] to ``limit``, the last segment cut at the limit."""
    area = 0.0
    for x0, y0, x1, y1 in zip(xs[:-1], ys[:-1], xs[1:], ys[1:]):
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
            continue
        if x0 < limit:  # the segment crossing the limit: interpolate the PRO there
            y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_lim) / 2
        break
    return area


def mvtec_aupro(maps, masks, limit: float, fpr_dtype=np.float64) -> float:
    """MVTec AU-PRO of lists of (H, W) maps and masks (shapes may differ between images)."""
    scores, region_of = [], []
    num_regions = 0
    for score_map, mask in zip(maps, masks):
        labels, n = ndimage.label(mask != 0, structure=EIGHT)
        region_of.append(np.where(labels > 0, labels + num_regions, 0).ravel())  # ids unique over images
        scores.append(np.asarray(score_map).ravel())
        num_regions += n
    scores, region_of = np.concatenate(scores), np.concatenate(region_of)
    sizes = np.bincount(region_of, minlength=num_regions + 1)[1:]
    normal = region_of == 0
    fprs, pros = [0.0], [0.0]
    for t in np.unique(scores)[::-1]:
        positive = scores >= t
        fpr = float(fpr_dtype((positive & normal).sum() / normal.sum()))
        pro = float(np.mean(np.bincount(region_of[positive], minlength=num_regions + 1)[1:] / sizes))
        fprs.append(min(fpr, 1.0))
        pros.append(min(pro, 1.0))
        if fpr > limit:  # the first point beyond the limit is the last one the integral uses
            break
    fprs.append(1.0)
    pros.append(1.0)
    return integrate_to(fprs, pros, limit) / limit


def ours(maps, masks, limit: float, per_image: bool = False) -> float:
    """Our AUPRO fed one stacked (N, H, W) batch, or one image per update (always when the shapes differ)."""
    metric = AUPRO(fpr_limit=limit)
    if per_image or len({np.shape(m) for m in maps}) > 1:
        for score_map, mask in zip(maps, masks):
            metric.update(torch.from_numpy(np.asarray(score_map)[None]), torch.from_numpy(np.asarray(mask)[None]))
    else:
        metric.update(torch.from_numpy(np.stack(maps)), torch.from_numpy(np.stack(masks)))
    return metric.compute().item()


def blob_masks(rng: np.random.Generator, shape: tuple[int, int], n: int, fraction: float) -> list[np.ndarray]:
    """Irregular masks (0/255): smoothed noise above its quantile, many regions touching only diagonally."""
    out = []
    for _ in range(n):
        field = ndimage.gaussian_filter(rng.random(shape), 1.2)
        out.append(np.where(field > np.quantile(field, 1 - fraction), 255, 0).astype(np.uint8))
    return out


def related_maps(rng: np.random.Generator, masks: list[np.ndarray], signal: float) -> list[np.ndarray]:
    """float32 maps in [0, 1): noise plus ``signal`` on the mask, so the curve is neither trivial nor random."""
    return [((rng.random(m.shape) + signal * (m > 0)) / (1 + signal)).astype(np.float32) for m in masks]


def case(name: str):
    rng = np.random.default_rng(sum(map(ord, name)))  # a seed per case, stable across runs (unlike hash())
    if name == "random":
        masks = blob_masks(rng, (45, 61), 3, 0.15)
        return [rng.random(m.shape).astype(np.float32) for m in masks], masks
    if name == "related":
        masks = blob_masks(rng, (23, 37), 4, 0.1)
        return related_maps(rng, masks, 0.6), masks
    if name == "quantised":  # 21 distinct scores: long runs of ties across normal and anomalous pixels
        masks = blob_masks(rng, (61, 45), 3, 0.12)
        return [np.round(m * 20) / 20 for m in related_maps(rng, masks, 0.5)], masks
    if name == "float16":  # what the server reads: float16 TIFFs, ties where float32 scores round together
        masks = blob_masks(rng, (45, 61), 3, 0.1)
        return [m.astype(np.float16) for m in related_maps(rng, masks, 0.4)], masks
    if name == "good_images":  # images without defects add only normal pixels
        masks = blob_masks(rng, (17, 29), 2, 0.2) + [np.zeros((17, 29), np.uint8)] * 3
        return related_maps(rng, masks, 0.3), masks
    if name == "single_region":
        mask = np.zeros((31, 19), np.uint8)
        mask[5:9, 3:12] = 255
        masks = [mask, np.zeros_like(mask), np.zeros_like(mask)]
        return related_maps(rng, masks, 0.2), masks
    if name == "shapes":  # images of different sizes pooled (our metric allows it; MVTec stacks one H x W)
        masks = blob_masks(rng, (45, 61), 2, 0.1) + blob_masks(rng, (9, 33), 2, 0.2)
        return related_maps(rng, masks, 0.3), masks
    raise ValueError(name)


CASES = ["random", "related", "quantised", "float16", "good_images", "single_region", "shapes"]


@pytest.mark.parametrize("limit", [0.05, 0.3])
@pytest.mark.parametrize("name", CASES)
def test_equals_mvtec_reference(name, limit):
    maps, masks = case(name)
    expected = mvtec_aupro(maps, masks, limit)
    assert 0.0 < expected <= 1.0
    assert ours(maps, masks, limit) == pytest.approx(expected, abs=1e-9)
    assert ours(maps, masks, limit, per_image=True) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("limit", [0.05, 0.3])
@pytest.mark.parametrize("name", CASES)
def test_mvtec_float32_fprs_differ_by_rounding_only(name, limit):
    maps, masks = case(name)  # measured <= 1.4e-9 here; float32 has a relative step of 6e-8
    assert ours(maps, masks, limit) == pytest.approx(mvtec_aupro(maps, masks, limit, np.float32), abs=1e-7)


def test_float64_maps_are_scored_as_float32():
    # AUPRO stores float32 scores: float64 scores that round together become ties, where MVTec's code (sorting
    # the float64 maps) keeps them apart; float16 and float32 maps, what the server and our models give, are exact
    rng = np.random.default_rng(1)
    masks = blob_masks(rng, (45, 61), 3, 0.1)
    maps = [np.round(m.astype(np.float64), 2) + 1e-10 * rng.random(m.shape) for m in related_maps(rng, masks, 0.5)]
    as_float32 = [m.astype(np.float32) for m in maps]
    assert ours(maps, masks, 0.05) == pytest.approx(mvtec_aupro(as_float32, masks, 0.05), abs=1e-9)
    assert abs(ours(maps, masks, 0.05) - mvtec_aupro(maps, masks, 0.05)) > 1e-4


def test_limit_on_a_curve_point_needs_no_interpolation():
    # 100 normal pixels: 5 above 0.5, so the threshold 0.5 gives FPR exactly 5 / 100 = 0.05 at a curve point, where
    # the region's other half jumps the PRO from 0.5 to 1 (a vertical step: no area)
    normal = np.concatenate([np.linspace(0.95, 0.91, 5), np.linspace(0.45, 0.0, 95)])
    scores = np.concatenate([[0.97, 0.97, 0.5, 0.5], normal]).astype(np.float32).reshape(8, 13)
    mask = np.zeros(104, np.uint8)
    mask[:4] = 255
    mask = mask.reshape(8, 13)
    assert mvtec_aupro([scores], [mask], 0.05) == pytest.approx(0.5, abs=1e-12)
    assert ours([scores], [mask], 0.05) == pytest.approx(0.5, abs=1e-12)


def test_diagonal_pixels_are_one_region():
    # two regions under 8-connectivity would be four under 4-connectivity, which changes the value
    mask = np.zeros((7, 9), np.uint8)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = 255
    mask[5, 6] = 255
    scores = np.full((7, 9), 0.1, np.float32)
    scores[1, 1] = 0.9  # one pixel of the diagonal region found first
    scores[5, 6] = 0.8
    scores[0, 8] = 0.85  # a false positive between them
    got = ours([scores], [mask], 0.3)
    assert got == pytest.approx(mvtec_aupro([scores], [mask], 0.3), abs=1e-9)
    four = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))[1]
    assert four == 4 and ndimage.label(mask, structure=EIGHT)[1] == 2
