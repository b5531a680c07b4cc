"""Matplotlib figures: per-image panels, ROC curve, score histogram, per-category bar chart."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402


def panel(image: np.ndarray, mask: np.ndarray, amap: np.ndarray, threshold: float, title: str, path: Path) -> None:
    """image | ground-truth contour | anomaly-map overlay | predicted mask.

    Args:
        image: (H, W, 3) uint8. mask: (H, W) {0, 1}. amap: (H, W) in [0, 1] after the category's normalisation.
        threshold: predicted-mask threshold on ``amap`` (the normalised pixel F1-max threshold).
    """
    contour = image.copy()
    contour[find_boundaries(mask.astype(bool), mode="outer")] = (255, 0, 0)
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
    for ax, shown, name in zip(
        axes, (image, contour, image, amap >= threshold), ("image", "ground truth", "anomaly map", "prediction")
    ):
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1 if shown.ndim == 2 else None)
        ax.set_title(name)
        ax.axis("off")
    axes[2].imshow(amap, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    fig.suptitle(title)
    _save(fig, path)


def roc_and_histogram(fpr: np.ndarray, tpr: np.ndarray, scores: np.ndarray, labels: np.ndarray, auroc: float,
                      title: str, path: Path) -> None:  # fmt: skip
    """Image-level ROC curve beside the score histogram of normal vs anomalous images."""
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(10, 4))
    roc.plot(fpr, tpr, label=f"AUROC {auroc:.4f}")
    roc.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="image ROC")
    roc.legend(loc="lower right")
    bins = np.linspace(scores.min(), scores.max(), 25) if scores.max() > scores.min() else 10
    hist.hist(scores[labels == 0], bins=bins, alpha=0.6, label="normal")
    hist.hist(scores[labels == 1], bins=bins, alpha=0.6, label="anomalous")
    hist.set(xlabel="image score", ylabel="images", title="image scores")
    hist.legend()
    fig.suptitle(title)
    _save(fig, path)


def metric_bars(categories: dict[str, dict], metrics: tuple[str, ...], title: str, path: Path) -> None:
    """Grouped bars: one group per category, one bar per metric."""
    names = list(categories)
    shown = [m for m in metrics if all(m in categories[n] for n in names)]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) * max(1, len(shown)) / 2), 4))
    width = 0.8 / max(1, len(shown))
    for k, metric in enumerate(shown):
        ax.bar(np.arange(len(names)) + k * width, [categories[n][metric] for n in names], width, label=metric)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
    ax.set(ylim=(0, 1.05), title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
