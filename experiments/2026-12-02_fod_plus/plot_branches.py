"""Per epoch, each branch's and stage's image AUROC and its mean image score on normal and anomalous validation
images (model.branch_analysis=true runs), and the model's own score ("combined"), averaged over the categories of
each run folder, then over the runs. Prints the image AUROC per epoch as a markdown table.

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

KEYS = ["combined"] + [f"stage{s}/{b}" for s in (0, 1) for b in ("rec", "intra", "inter")]
VALUES = ("image_auroc", "normal_mean", "anomalous_mean")


def column(key: str, value: str) -> str:
    return f"val/{value}" if key == "combined" else f"val_branch/{key}/{value}"


def merged(runs: list[Path], value: str) -> dict[str, dict[int, list[float]]]:
    """key -> epoch -> values over every category of every run."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for metrics in sorted(run.glob("*/metrics.csv")):
            with metrics.open(newline="") as f:
                for row in csv.DictReader(f):
                    for key in KEYS:
                        if cell := row.get(column(key, value)):
                            found[key][int(float(row["epoch"]))].append(float(cell))
    return found


def main(out: Path, runs: list[Path]) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, value in zip(axes, VALUES):
        series = merged(runs, value)
        for key in KEYS:
            if series.get(key):
                epochs = sorted(series[key])
                style = {"color": "black", "linewidth": 2.5} if key == "combined" else {}
                ax.plot(epochs, [statistics.fmean(series[key][e]) for e in epochs], marker="o", label=key, **style)
        ax.set(xlabel="epoch", title=f"validation (from_train): {value}",
               yscale="linear" if value == "image_auroc" else "log")  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    auroc = merged(runs, "image_auroc")
    epochs = sorted({e for per_epoch in auroc.values() for e in per_epoch})
    print("| validation image AUROC | " + " | ".join(f"epoch {e}" for e in epochs) + " |")
    print("|---|" + "---|" * len(epochs))
    for key in KEYS:
        if auroc.get(key):
            print(f"| {key} | " + " | ".join(f"{statistics.fmean(auroc[key][e]):.3f}" for e in epochs) + " |")
    for value in ("normal_mean", "anomalous_mean"):
        means = merged(runs, value)
        for key in KEYS[1:]:
            if means.get(key):
                cells = " | ".join(f"{statistics.fmean(means[key][e]):.3g}" for e in epochs)
                print(f"| {key} {value} | {cells} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
