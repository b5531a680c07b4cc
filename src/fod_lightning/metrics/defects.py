"""Per defect type: each type's image AUROC against the normal images, and its pixel AUPRO."""

import numpy as np
import torch
from torchmetrics.classification import BinaryAUROC

from fod_lightning.metrics.aupro import AUPRO

FPR_LIMIT = 0.3


def aupro_and_curve(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT
                    ) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """Exact AUPRO up to ``fpr_limit`` (0.3 by default) and the PRO curve it integrates (FPR, PRO).

    Args:
        maps: (N, H, W) anomaly maps. masks: (N, H, W) binary ground truth.
    """
    metric = AUPRO(fpr_limit=fpr_limit, sync_on_compute=False)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks))
    normal, weight = metric._exact_counts()  # cumulative counts at every distinct score, descending
    fpr = np.concatenate([[0.0], (normal / normal[-1]).numpy()])
    pro = np.concatenate([[0.0], (weight / int(metric.num_regions)).numpy()])
    return float(metric.compute()), fpr, pro


def defect_metrics(scores: np.ndarray, labels: np.ndarray, maps: np.ndarray, masks: np.ndarray,
                   defects: list[str], fpr_limit: float = FPR_LIMIT) -> dict[str, dict]:  # fmt: skip
    """Per defect type: image AUROC (normal test images vs this type's images), pixel AUPRO over the maps of
    those images (only where this type has ground-truth regions) and the number of this type's images.

    Args:
        scores: (N,) image scores. labels: (N,) 1 = anomalous. maps, masks: (N, H, W). defects: N type names.
    """
    normal, kinds = labels == 0, np.array(defects)
    result = {}
    for kind in sorted(set(kinds[labels == 1])):
        chosen = normal | ((kinds == kind) & (labels == 1))
        numbers = {}
        if normal.any():
            numbers["image_auroc"] = raw_auroc(scores[chosen], labels[chosen])
        if masks[chosen].any() and not masks[chosen].all():
            numbers["pixel_aupro"] = aupro_and_curve(maps[chosen], masks[chosen], fpr_limit)[0]
        result[str(kind)] = numbers | {"num_images": int((chosen & ~normal).sum())}
    return result


def raw_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact AUROC of raw scores (torchmetrics' functional form would squash scores outside [0, 1] with a sigmoid,
    which ties large scores: FOD's and the baselines' are not probabilities)."""
    metric = BinaryAUROC(normalization=None, sync_on_compute=False)
    metric.update(torch.from_numpy(scores), torch.from_numpy(labels))
    return float(metric.compute())
