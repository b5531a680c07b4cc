"""Pixel metrics at each test image's original resolution (MVTec AD 2: several megapixels, scored by its server at full
size), streamed one image at a time: the maps of the model's input are drawn back onto each image's own size by the
data contract and compared with its mask as read from disk.

Exact while the exact metrics' peak fits in ``memory_bytes`` (``BYTES_PER_PIXEL``: the scores and masks they keep, and
the sorting, cumulative sums and region labels of computing the curves); beyond, the
pixel metrics are binned on ``bins`` thresholds over the maps' range (constant memory; AUPRO's error is bounded as
:class:`~fod_lightning.metrics.aupro.AUPRO` states). SegF1 (pixel F1 at the calibrated pixel threshold, all pixels of
the category pooled) is exact either way: it only counts.
"""

import math
from collections.abc import Iterable

import numpy as np
import torch
from PIL import Image

from fod_lightning.data.contract import DataContract
from fod_lightning.data.samples import Sample
from fod_lightning.data.transforms import read_mask
from fod_lightning.metrics.collection import MAD_PARTS, AnomalyMetrics
from fod_lightning.metrics.seg_f1 import SegF1

PIXEL_METRICS = ("pixel_auroc", "pixel_aupro", "pixel_f1_max", "pixel_ap")
# The exact metrics' peak memory per pixel, measured: 6.1 GiB above the process's baseline for 105 M pixels (100 maps
# of 1024 x 1024 px), 62 B per pixel (python -m fod_lightning.bench scale, 2026-12-06): so 2 GiB is about 33 M pixels.
BYTES_PER_PIXEL = 64


def image_size(path) -> tuple[int, int]:
    """(H, W) of an image file from its header (EXIF orientation as read_image applies it)."""
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def original_resolution_metrics(predictions: list[dict], samples: Iterable[Sample], contract: DataContract,
                                fpr_limit: float, pixel_threshold: float | None, memory_bytes: int = 2**31,
                                bins: int = 10_000) -> dict:  # fmt: skip
    """The pixel metrics of ``predictions`` (the evaluator's test predictions: ``path``, ``map`` at the input size,
    ``score``, ``label``) at each image's size, with SegF1 at ``pixel_threshold`` and mAD with them.

    Returns:
        ``pixel_auroc``, ``pixel_aupro``, ``pixel_f1_max``, ``pixel_ap``, ``seg_f1`` (None without a threshold),
        and ``pixel_metrics`` = {"resolution": "original", "mode": "exact" or "binned", "bins", "pixels"}.
    """
    masks = {str(s.image_path): s.mask_path for s in samples}
    sizes = {it["path"]: image_size(it["path"]) for it in predictions}
    pixels = sum(h * w for h, w in sizes.values())
    exact = pixels * BYTES_PER_PIXEL <= memory_bytes
    low = min(float(np.nanmin(it["map"])) for it in predictions)
    high = max(float(np.nanmax(it["map"])) for it in predictions)  # bilinear maps drawn back stay within
    high = high if high > low else low + 1e-6
    metrics = AnomalyMetrics(True, None if exact else bins, (low, high), fpr_limit)
    seg = SegF1(pixel_threshold) if pixel_threshold is not None else None
    for it in predictions:
        height, width = sizes[it["path"]]
        amap = contract.map_to_image(it["map"], height, width)
        mask = read_mask(masks[it["path"]]) if masks.get(it["path"]) else np.zeros((height, width), np.uint8)
        seen = ~np.isnan(amap)  # outside a shorter_side_crop the model saw nothing: not scored
        amap_t, mask_t = torch.from_numpy(np.where(seen, amap, low))[None], torch.from_numpy(mask * seen)[None]
        metrics.update(torch.tensor([it["score"]]), torch.tensor([it["label"]]), amap_t, mask_t)
        if seg is not None:
            seg.update(amap_t[0][torch.from_numpy(seen)], mask_t[0][torch.from_numpy(seen)])
    values = metrics.compute()
    record = {k: float(values[k]) for k in PIXEL_METRICS}
    record["seg_f1"] = float(seg.compute()) if seg is not None else None
    record["pixel_metrics"] = {"resolution": "original", "mode": "exact" if exact else "binned",
                               "bins": None if exact else bins, "pixels": int(pixels)}  # fmt: skip
    return record


def with_original_resolution(record: dict, original: dict) -> dict:
    """A category's test record with its pixel metrics replaced by those at original resolution, and mAD again."""
    merged = record | original
    parts = [merged.get(m, math.nan) for m in MAD_PARTS]
    merged["mad"] = sum(parts) / len(parts) if all(v is not None and math.isfinite(v) for v in parts) else math.nan
    return merged
