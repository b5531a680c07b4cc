"""Phase A: FOD's reference in the unified setting, chosen by held-out validation image AUROC (from_train: held-out
normal training images of every category and synthetic-defect copies), never by the test split. Prints a Markdown
table (the test readings beside, not used to choose) and the choice.

    .venv/bin/python experiments/2026-12-06_unified/choose_reference.py SWEEP_DIR [SWEEP_DIR ...]
"""

import json
import sys
from pathlib import Path


def variant(run: dict) -> str:
    net = run["config"]["model"]["net"]
    mode = net["reference_mode"]
    return (
        f"{mode}, {net['reference_neighbours']} neighbours"
        if mode == "retrieved"
        else f"{mode}, {net['reference_clusters']} groups"
    )


def main(folders: list[str]) -> None:
    rows = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*/results.json")):
            results = json.loads(path.read_text())
            first = next(iter(results["categories"].values()))
            rows.append((first["val"]["image_auroc"], variant(results["run"]), first["val"], results["mean"]))
    print(
        "| reference | validation image AUROC | validation pixel AUROC | test image AUROC (mean) | test pixel AUROC "
        "(mean) |\n|---|---|---|---|---|"
    )
    for val, name, vals, mean in sorted(rows, reverse=True):
        print(
            f"| {name} | {val:.4f} | {vals['pixel_auroc']:.4f} | {mean['image_auroc']:.4f} | "
            f"{mean['pixel_auroc']:.4f} |"
        )
    print(f"\nchosen on validation: {max(rows)[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
