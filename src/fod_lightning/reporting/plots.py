"""Matplotlib figures: per-image panels, ROC curve and score histogram, PRO curve, training losses, prediction
overlays, per-setting and per-category bars."""

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

FEW_POINTS = 50  # curves with at most this many points show each point
TITLE_CHARACTERS = 150  # a panel's title lines are wrapped at this many characters (its figure holds about 190)


class PanelFigure:
    """Per-image panels of one category: image | ground-truth contour | anomaly-map overlay (colour bar) | predicted
    mask, drawn on one figure kept open (built again when the image size changes). Each panel replaces the images,
    titles and threshold mark of the previous one, so that the layout is computed once, not for every image: 0.121 s
    per 256 px panel against 0.245 s for a fresh figure, its layout and a tight bounding box (measured interleaved,
    2026-12-06, on the project's 2-core machine).

    Args:
        scale: (vmin, vmax) of the colour map in raw units: the same for every panel of a category.
    """

    def __init__(self, scale: tuple[float, float]) -> None:
        self.scale = scale
        self.fig = None
        self.shape: tuple[int, ...] | None = None

    def _build(self, shape: tuple[int, ...]) -> None:
        self.close()
        lo, hi = self.scale
        placeholder = np.zeros(shape, np.uint8)
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
        self.fig, self.axes, self.shape, self.title_lines = fig, axes, shape, 2  # closed by close(), even if this fails
        self.pictures = [ax.imshow(placeholder) for ax in axes[:3]]
        for ax, name in zip(axes[:3], ("image", "ground truth", "anomaly map")):
            ax.set_title(name)
        self.heat = axes[2].imshow(np.zeros(shape[:2]), cmap="jet", alpha=0.5, vmin=lo, vmax=hi)
        bar = fig.colorbar(self.heat, ax=axes[2], fraction=0.046, pad=0.04)
        bar.set_label(f"score, fixed scale {lo:.3g} to {hi:.3g}", fontsize=7)
        self.threshold_mark = bar.ax.axhline(lo, color="black", linewidth=1.5)
        self.prediction = axes[3].imshow(np.zeros(shape[:2]), cmap="gray", vmin=0, vmax=1)
        axes[3].set_title("prediction: score >= 0.0000")
        for ax in axes:
            ax.axis("off")
        self.title = fig.suptitle("two lines\nof title", fontsize=9)
        fig.tight_layout()  # once, with a title of two lines (laid out again for a longer one)

    def update(self, image: np.ndarray, mask: np.ndarray, amap: np.ndarray, threshold: float | None,
               title: str):  # fmt: skip
        """The figure showing one image (returned, still open).

        Args:
            image: (H, W, 3) uint8. mask: (H, W) {0, 1}. amap: (H, W) raw anomaly map.
            threshold: predicted-mask threshold on ``amap`` (raw units; None: no prediction drawn), marked on the bar.
        """
        if self.fig is None or image.shape != self.shape:
            self._build(image.shape)
        lo, hi = self.scale
        contour = image.copy()
        contour[find_boundaries(mask.astype(bool), mode="outer")] = (255, 0, 0)
        for picture, shown in zip(self.pictures, (image, contour, image)):
            picture.set_data(shown)
        self.heat.set_data(amap)
        self.prediction.set_visible(threshold is not None)
        if threshold is None:
            self.axes[3].set_title("prediction: no threshold")
        else:
            self.prediction.set_data(amap >= threshold)
            self.axes[3].set_title(f"prediction: score >= {threshold:.4g}")
            self.threshold_mark.set_ydata([threshold, threshold])
        self.threshold_mark.set_visible(threshold is not None and lo <= threshold <= hi)
        # lines wrapped within the figure's width instead of cut off at its edges
        title = "\n".join(textwrap.fill(line, TITLE_CHARACTERS) for line in title.split("\n"))
        self.title.set_text(title)
        if title.count("\n") + 1 > self.title_lines:  # more lines than laid out for: room made above the images
            self.title_lines = title.count("\n") + 1
            self.fig.tight_layout()
        return self.fig

    def draw(self, image: np.ndarray, mask: np.ndarray, amap: np.ndarray, threshold: float | None, title: str,
             path: Path) -> None:  # fmt: skip
        """Writes the panel of one image (see :meth:`update`) to ``path``."""
        _write(self.update(image, mask, amap, threshold, title), path)

    def close(self) -> None:
        if self.fig is not None:
            plt.close(self.fig)
            self.fig = None

    def __enter__(self) -> "PanelFigure":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def overlay(image: np.ndarray, amap: np.ndarray, threshold: float | None, scale: tuple[float, float], title: str,
            path: Path) -> None:  # fmt: skip
    """The image beside the image with its anomaly map on the colour ``scale`` every image of the run shares (raw
    score units), the threshold marked on the colour bar and, where the map crosses it, as a contour.

    Args:
        image: (H, W, 3) uint8, the original image. amap: (H, W) raw anomaly map at its size (NaN: not scored).
    """
    lo, hi = scale
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.8))
    left.imshow(image)
    left.set_title("image")
    right.imshow(image)
    heat = right.imshow(amap, cmap="jet", alpha=0.5, vmin=lo, vmax=hi)
    bar = fig.colorbar(heat, ax=right, fraction=0.046, pad=0.04)
    bar.set_label(f"anomaly score, fixed scale {lo:.3g} to {hi:.3g}", fontsize=7)
    if threshold is not None:
        bar.ax.axhline(threshold, color="black", linewidth=1.5)
        if np.nanmin(amap) < threshold < np.nanmax(amap):
            right.contour(np.nan_to_num(amap, nan=lo), levels=[threshold], colors="white", linewidths=1.2)
    right.set_title("anomaly map" + (f", threshold {threshold:.4g}" if threshold is not None else ""))
    for ax in (left, right):
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def roc_and_histogram(fpr: np.ndarray, tpr: np.ndarray, scores: np.ndarray, labels: np.ndarray, auroc: float,
                      title: str, path: Path, threshold: float | None = None, source: str = "") -> None:  # fmt: skip
    """Image-level ROC curve beside the score histogram of normal vs anomalous images, with a vertical line at
    the image ``threshold`` (labelled with its value and ``source``)."""
    fig, (roc, hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    roc.plot(fpr, tpr, label=f"AUROC {auroc:.4f}")
    roc.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="image ROC")
    roc.legend(loc="lower right")
    bins = np.linspace(scores.min(), scores.max(), 25) if scores.max() > scores.min() else 10
    hist.hist(scores[labels == 0], bins=bins, alpha=0.6, label="normal")
    hist.hist(scores[labels == 1], bins=bins, alpha=0.6, label="anomalous")
    if threshold is not None:
        hist.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.4g}\n({source})")
    hist.set(xlabel="image score", ylabel="images", title="image scores")
    hist.legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, path)


def pro_curve(fpr: np.ndarray, pro: np.ndarray, aupro: float, fpr_limit: float, title: str, path: Path) -> None:
    """Per-region overlap vs false positive rate up to ``fpr_limit`` (the range AUPRO integrates)."""
    inside = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x, y = fpr[: inside + 1], pro[: inside + 1]  # one point past the limit: the line reaches the edge
    if len(x) > 2000:  # millions of pixel thresholds: 2000 points draw the same line
        keep = np.unique(np.linspace(0, len(x) - 1, 2000).astype(int))
        x, y = x[keep], y[keep]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(x, y, label=f"AUPRO (FPR <= {fpr_limit:g}) {aupro:.4f}")
    ax.set(xlim=(0, fpr_limit), ylim=(0, 1.02), xlabel="false positive rate (normal pixels)",
           ylabel="per-region overlap", title=title)  # fmt: skip
    ax.legend(loc="lower right")
    _save(fig, path)


def loss_curves(series: dict[str, tuple[list[float], list[float]]], title: str, path: Path) -> None:
    """Training losses vs step: ``train/loss`` in the first panel, then one panel per stage.

    Args:
        series: metric name (``train/loss``, ``train/stage<i>/<loss>``) -> (steps, values).
    """
    groups: dict[str, dict] = {}
    for name, xy in series.items():
        parts = name.split("/")
        group, label = ("total", parts[-1]) if len(parts) < 3 else (parts[1], parts[2])
        groups.setdefault(group, {})[label] = xy
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    for ax, (group, curves) in zip(axes[0], groups.items()):
        for label, (steps, values) in curves.items():
            ax.plot(steps, values, label=label, linewidth=1, marker="o" if len(steps) <= FEW_POINTS else None,
                    markersize=3)  # fmt: skip
        ax.set(xlabel="step", title=group)
        ax.legend(fontsize=6)
    fig.suptitle(title)
    _save(fig, path)


def validation_curves(series: dict[str, tuple[list[int], list[float]]], title: str, path: Path) -> None:
    """Validation metrics per epoch (one panel, every metric; points marked).

    Args:
        series: metric name (``image_auroc``...) -> (epochs, values).
    """
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (epochs, values) in series.items():
        ax.plot(epochs, values, label=name, linewidth=1, marker="o", markersize=3)
    ax.set(xlabel="epoch", ylabel="value", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=7)
    _save(fig, path)


def setting_bars(tables: dict[str, dict[str, dict]], labels: dict[str, str], metrics: tuple[str, ...], title: str,
                 path: Path, best: dict[str, dict[str, dict]] | None = None) -> None:  # fmt: skip
    """One panel per metric: bars per category (and the mean, when there are several), one bar per setting, error
    bars = std over seeds; ``best`` readings (the best validation epoch) as black marks on the bars.

    A metric no category has (null in results.json: e.g. AUROC without anomalous test images) gets no panel and
    is named in the title; a missing bar is labelled ``n/a``; with no metric at all the figure says so.

    Args:
        tables: setting key -> category -> metric -> stat with ``mean`` and ``std`` (None with one seed).
        labels: setting key -> legend label.
        best: the same for the best readings (optional).
    """
    keys = list(tables)
    categories = list(dict.fromkeys(c for t in tables.values() for c in t))
    if len(categories) == 2 and "mean" in categories:  # the mean of one category is that category
        categories.remove("mean")
    shown = [m for m in metrics if any(m in t.get(c, {}) for t in tables.values() for c in categories)]
    missing = [m for m in metrics if m not in shown]
    if missing:
        title += f"\nnot available for any category: {', '.join(missing)} (see not_available in results.json)"
    if not shown:
        _nothing_to_show(categories, title, path)
        return
    width_in = max(6, 0.9 * len(categories) * max(1, len(keys)) / 2 + 3)
    fig, axes = plt.subplots(len(shown), 1, figsize=(width_in, 2.6 * len(shown) + 0.4 * bool(missing)), squeeze=False)
    width = 0.8 / max(1, len(keys))
    for ax, metric in zip(axes[:, 0], shown):
        for k, key in enumerate(keys):
            stats = [tables[key].get(c, {}).get(metric) for c in categories]
            bars = ax.bar(np.arange(len(categories)) + k * width, [s.mean if s else 0 for s in stats], width,
                          yerr=[(s.std or 0) if s else 0 for s in stats], capsize=2,
                          label=textwrap.fill(labels[key], 60))  # fmt: skip
            ax.bar_label(bars, [f"{s.mean:.3f}" if s else "n/a" for s in stats], fontsize=7, rotation=90, padding=2)
            marks = [(best or {}).get(key, {}).get(c, {}).get(metric) for c in categories]
            if any(marks):
                x = [i + k * width for i, s in enumerate(marks) if s]
                ax.scatter(x, [s.mean for s in marks if s], marker="_", s=220, color="black", zorder=3,
                           label="best validation epoch" if k == 0 else None)  # fmt: skip
        ax.set_xticks(np.arange(len(categories)) + 0.4 - width / 2, categories, rotation=30, ha="right")
        ax.set(ylim=(0, 1.3), yticks=np.linspace(0, 1, 5), ylabel=metric)  # room above 1 for the values
    axes[0, 0].set_title("\n".join(textwrap.fill(line, 110) for line in title.split("\n")), fontsize=9)
    # below the panels, labels wrapped: a long setting label (every override of a single run) stays readable
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8,
               ncol=1 if len(keys) > 2 else len(keys) + 1)  # fmt: skip
    _save(fig, path)


def _nothing_to_show(categories: list[str], title: str, path: Path) -> None:
    """A figure that says no metric is available (instead of no figure, or a figure without panels)."""
    named = [c for c in categories if c != "mean"]
    fig, ax = plt.subplots(figsize=(7, 2.4))
    ax.text(0.5, 0.5, f"no metric is available for {', '.join(named) or 'any category'}:\n"
            "each is null in results.json, with the reason under not_available", ha="center", va="center",
            fontsize=9, wrap=True, transform=ax.transAxes)  # fmt: skip
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def _write(fig, path: Path, **options) -> None:
    """Saves a figure at PNG compression level 1 (compressing at the default 6 took about a fifth of a panel's time in
    a profile of one panel), leaving it open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, pil_kwargs={"compress_level": 1}, **options)


def _save(fig, path: Path) -> None:
    """Lays out, saves and closes a figure drawn once."""
    fig.tight_layout()
    _write(fig, path, bbox_inches="tight")  # legends placed beside the axes are not cut off
    plt.close(fig)
