"""Threshold rules and PNG against JPEG, on the runs of run.sh: for each model, the image scores of its calibration
images (held-out normal training photos), of the normal and defective test photos, and of the normal test photos saved
as JPEG (quality 92); each rule's threshold from the calibration scores alone; false alarms on the normal test photos
(PNG and JPEG) and misses of the defective ones. Writes thresholds.md and jpeg.md into OUT.

    .venv/bin/python experiments/2026-12-06_own_images/thresholds_and_jpeg.py OUT
"""

import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import OmegaConf

import fod_lightning
from fod_lightning.metrics.thresholds import CalibrationSettings, image_threshold

RULES = {
    "quantile 0.99 (before)": CalibrationSettings(image_rule="quantile"),
    "conformal, rate 0.01": CalibrationSettings(image_rule="conformal", false_alarm_rate=0.01),
    "conformal, rate 0.05": CalibrationSettings(image_rule="conformal", false_alarm_rate=0.05),
    "bound, rate 0.01": CalibrationSettings(image_rule="bound", false_alarm_rate=0.01),
}


@torch.no_grad()
def scores_of(model, batches) -> np.ndarray:
    return np.concatenate([model.net.score_images(b)[0].numpy() for b in batches])


def measured(run: Path) -> dict:
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    model = fod_lightning.load(run / "coffee" / "checkpoints" / "last.ckpt")
    calibration = scores_of(model, (b.image for b in datamodule.calibration_dataloader()))
    test = [(b.image, b.label) for b in datamodule.test_dataloader()]
    scores, labels = scores_of(model, (i for i, _ in test)), torch.cat([lb for _, lb in test]).numpy()
    jpeg_files = sorted(Path(cfg.data.root, "test_good_jpeg").glob("*.jpg"))
    jpeg = scores_of(model, [torch.stack([model.contract.preprocess(p) for p in jpeg_files])])
    return {"calibration": calibration, "normal": scores[labels == 0], "defective": scores[labels == 1], "jpeg": jpeg,
            "saved": model.thresholds.calibrated}  # fmt: skip


def main(out: Path) -> None:
    rows, jpeg_rows = [], []
    for run in sorted(p for p in (out / "runs").iterdir() if (p / ".hydra").is_dir()):
        m = measured(run)
        n = len(m["calibration"])
        for rule, settings in RULES.items():
            t, rate = image_threshold(m["calibration"], settings)
            rows.append(f"| {run.name} | {n} | {rule} | {t:.4g} | {'-' if rate is None else f'{rate:.3f}'} | "
                        f"{int((m['normal'] >= t).sum())}/{len(m['normal'])} | "
                        f"{int((m['jpeg'] >= t).sum())}/{len(m['jpeg'])} | "
                        f"{int((m['defective'] < t).sum())}/{len(m['defective'])} |")  # fmt: skip
        shift = m["jpeg"] - m["normal"]
        jpeg_rows.append(f"| {run.name} | {m['normal'].mean():.4g} | {m['jpeg'].mean():.4g} | {shift.mean():+.4g} | "
                         f"{shift.std(ddof=1):.3g} | {m['calibration'].max():.4g} | "
                         f"{m['defective'].min():.4g} |")  # fmt: skip
    head = (
        "| run | calibration images | rule | image threshold | stated false-alarm rate | false alarms, normal "
        "PNG | false alarms, same photos as JPEG 92 | misses, defective |\n|---|---|---|---|---|---|---|---|"
    )
    (out / "thresholds.md").write_text(head + "\n" + "\n".join(rows) + "\n")
    head = (
        "| run | mean score, normal PNG | mean score, same photos JPEG 92 | shift (JPEG - PNG) | std of shift | "
        "highest calibration score | lowest defective score |\n|---|---|---|---|---|---|---|"
    )
    (out / "jpeg.md").write_text(head + "\n" + "\n".join(jpeg_rows) + "\n")
    print((out / "thresholds.md").read_text(), (out / "jpeg.md").read_text(), sep="\n")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(Path(sys.argv[1]))
