"""The fixed small job whose numbers a redesign must keep (recorded on 2d0677c, before the engine redesign).

Embedded benchmark (brick, 10 normal training crops, 10 test crops), 64 px, a small FOD, 2 epochs, seed 3407:
every test, validation and best-epoch metric, the per-defect numbers and the calibrated thresholds of
``last.ckpt`` must equal the recorded ones to 1e-6. It holds out one of the 10 training images to calibrate, as
when it was recorded (the default now trains on all 10: a hold-out under model.calibration.min_images is not made).
"""

import json
from pathlib import Path

import pytest
import torch

from fod_lightning.run import run
from helpers.configs import compose_config

EXPECTED = Path(__file__).with_name("fixed_job_expected.json")
FIXED = ["data.category=brick", "data.n_train=10", "data.n_test_good=4", "data.n_test_per_defect=2",
         "data.crop_size=64", "data.image_size=64", "model.net.d_models=[16,32]", "model.net.depth=1",
         "model.net.n_heads=2", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
         "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "trainer.accelerator=cpu",
         "callbacks.test_pictures.max_panels=1", "seed=3407",
         "data.calibration_min_images=1"]  # fmt: skip  # the hold-out of 1 calibration image it was recorded with


def flat(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_fixed_job_keeps_its_recorded_numbers(tmp_path):
    results = run(compose_config(tmp_path, FIXED))
    category = results["categories"]["brick"]
    measured = {k: category[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max",
                                         "pixel_f1_max", "num_images", "val", "best", "defects", "image_ap",
                                         "pixel_ap", "mad")}  # fmt: skip  # the last three added 2026-12-06
    checkpoint = torch.load(tmp_path / "out/brick/checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    saved = checkpoint["anomaly_model"]["thresholds"]
    measured["thresholds"] = {k: saved[k] for k in ("image", "pixel", "num_images")}
    expected = flat(json.loads(EXPECTED.read_text()))
    got = flat(measured)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
