"""Matplotlib figures: per-image panels, ROC curve, score histogram, per-setting and per-category bars."""

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


def overlay(image: np.ndarray, amap: np.ndarray, threshold: float | None, title: str, path: Path) -> None:
    """The image beside the image with its anomaly map (raw score units, colour bar) and, when a pixel
    threshold is known, the contour of the pixels above it.

    Args:
        image: (H, W, 3) uint8. amap: (H, W) raw anomaly map at the same size.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.8))
    left.imshow(image)
    left.set_title("image")
    right.imshow(image)
    heat = right.imshow(amap, cmap="jet", alpha=0.5)
    fig.colorbar(heat, ax=right, fraction=0.046, pad=0.04, label="anomaly score")
    if threshold is not None and amap.min() < threshold < amap.max():
        right.contour(amap, levels=[threshold], colors="white", linewidths=1.2)
    right.set_title("anomaly map" + (f", contour at {threshold:.4g}" if threshold is not None else ""))
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
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


def setting_bars(tables: dict[str, dict[str, dict]], labels: dict[str, str], metrics: tuple[str, ...], title: str,
                 path: Path) -> None:  # fmt: skip
    """One panel per metric: bars per category (and the mean), one bar per setting, error bars = std over seeds.

    Args:
        tables: setting key -> category -> metric -> stat with ``mean`` and ``std`` (None with one seed).
        labels: setting key -> legend label.
    """
    keys = list(tables)
    categories = list(dict.fromkeys(c for t in tables.values() for c in t))
    shown = [m for m in metrics if any(m in t.get(c, {}) for t in tables.values() for c in categories)]
    fig, axes = plt.subplots(len(shown), 1, figsize=(max(6, 0.9 * len(categories) * max(1, len(keys)) / 2 + 3),
                                                     2.6 * len(shown)), squeeze=False)  # fmt: skip
    width = 0.8 / max(1, len(keys))
    for ax, metric in zip(axes[:, 0], shown):
        for k, key in enumerate(keys):
            stats = [tables[key].get(c, {}).get(metric) for c in categories]
            ax.bar(np.arange(len(categories)) + k * width, [s.mean if s else np.nan for s in stats], width,
                   yerr=[(s.std or 0) if s else 0 for s in stats], capsize=2, label=labels[key])  # fmt: skip
        ax.set_xticks(np.arange(len(categories)) + 0.4 - width / 2, categories, rotation=30, ha="right")
        ax.set(ylim=(0, 1.05), ylabel=metric)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
