"""The threshold rules on the embedded benchmark and the photos (issue 28): for every separate-setting job of the given
multirun folders (the unified study's B sweeps, data.val_protocol=from_train) and each of its categories, the image
scores of the calibration images (the held-out validation normals) and of the test split, each rule's threshold from
the calibration scores alone, and the false alarms (normal test images at or above it) and misses (defective ones
below it). Writes benchmarks.md into the first folder's parent.

    .venv/bin/python experiments/2026-12-06_own_images/threshold_rules.py OUT/B_textures OUT/B_photos ...
"""

import sys
from collections import defaultdict
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import OmegaConf

import fod_lightning
from fod_lightning.metrics.thresholds import CalibrationSettings, image_threshold

RULES = {
    "quantile 0.99 (before)": CalibrationSettings(image_rule="quantile"),
    "conformal 0.01 (default)": CalibrationSettings(image_rule="conformal", false_alarm_rate=0.01),
    "bound 0.01": CalibrationSettings(image_rule="bound", false_alarm_rate=0.01),
}


@torch.no_grad()
def scores_of(model, loader) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = [], []
    for batch in loader:
        scores.append(model.net.score_images(batch.image)[0].numpy())
        labels.append(batch.label.numpy())
    return np.concatenate(scores), np.concatenate(labels)


def counts(job: Path) -> tuple[str, dict]:
    """The job's model name and, per rule, [false alarms, normal test images, misses, defective test images, n]."""
    cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    name = "fod_plus" if cfg.get("task_name") == "fod_plus" else cfg.model._target_.rsplit(".", 1)[-1]
    totals = defaultdict(lambda: np.zeros(5, dtype=int))
    for category in sorted(p.parent.parent.name for p in job.glob("*/checkpoints/last.ckpt")):
        data = OmegaConf.to_container(cfg.data, resolve=True) | {"category": category}
        datamodule = hydra.utils.instantiate(data)
        datamodule.setup()
        model = fod_lightning.load(job / category / "checkpoints" / "last.ckpt")
        calibration, _ = scores_of(model, datamodule.calibration_dataloader())
        test, labels = scores_of(model, datamodule.test_dataloader())
        for rule, settings in RULES.items():
            t, _ = image_threshold(calibration, settings)
            normal, defective = test[labels == 0], test[labels == 1]
            totals[rule] += [int((normal >= t).sum()), len(normal), int((defective < t).sum()), len(defective),
                             len(calibration)]  # fmt: skip
    return name, totals


def main(folders: list[Path]) -> None:
    rows = []
    for folder in folders:
        for job in sorted(p for p in folder.iterdir() if (p / ".hydra").is_dir()):
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            if cfg.get("setting", "separate") != "separate":
                continue
            name, totals = counts(job)
            for rule, (alarms, normals, misses, defective, n) in totals.items():
                rows.append(f"| {folder.name} | {name} | seed {cfg.seed} | {rule} | {n} | {alarms}/{normals} | "
                            f"{misses}/{defective} |")  # fmt: skip
    head = (
        "| sweep | model | seed | rule | calibration images (all categories) | false alarms, normal test | "
        "misses, defective test |\n|---|---|---|---|---|---|---|"
    )
    out = folders[0].parent / "benchmarks.md"
    out.write_text(head + "\n" + "\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    torch.set_num_threads(2)
    main([Path(p) for p in sys.argv[1:]])
