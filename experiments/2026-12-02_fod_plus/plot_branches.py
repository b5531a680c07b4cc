"""Per epoch, each branch's and stage's image AUROC and its mean image score on normal and anomalous validation
images (model.branch_analysis=true runs), averaged over the categories of each run folder, then over the runs.

    .venv/bin/python experiments/2026-12-02_fod_plus/plot_branches.py OUT.png RUN_FOLDER [RUN_FOLDER ...]
"""

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KEYS = [f"stage{s}/{b}" for s in (0, 1) for b in ("rec", "intra", "inter")]


def series(run: Path, value: str) -> dict[str, dict[int, list[float]]]:
    """key -> epoch -> values over the run's categories (and the runs added later)."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for metrics in sorted(run.glob("*/metrics.csv")):
        with metrics.open(newline="") as f:
            for row in csv.DictReader(f):
                for key in KEYS:
                    cell = row.get(f"val_branch/{key}/{value}")
                    if cell:
                        found[key][int(float(row["epoch"]))].append(float(cell))
    return found


def main(out: Path, runs: list[Path]) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, value in zip(axes, ("image_auroc", "normal_mean", "anomalous_mean")):
        merged: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in runs:
            for key, per_epoch in series(run, value).items():
                for epoch, values in per_epoch.items():
                    merged[key][epoch] += values
        for key in KEYS:
            if merged.get(key):
                epochs = sorted(merged[key])
                ax.plot(epochs, [statistics.fmean(merged[key][e]) for e in epochs], marker="o", label=key)
        ax.set(xlabel="epoch", title=f"validation: {value}", yscale="linear" if value == "image_auroc" else "log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print("\n".join(f"{k}: " + ", ".join(f"e{e} {statistics.fmean(v):.3f}" for e, v in sorted(d.items()))
                    for k, d in merged_auroc(runs).items()))  # fmt: skip


def merged_auroc(runs: list[Path]) -> dict[str, dict[int, list[float]]]:
    merged: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for key, per_epoch in series(run, "image_auroc").items():
            for epoch, values in per_epoch.items():
                merged[key][epoch] += values
    return merged


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
