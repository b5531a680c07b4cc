"""What a run records for its user: the thresholds with their rule and promise in results.json and the summary, the
test split's scores.csv, and the checkpoints each kind of model keeps."""

import csv
import json

import pytest

from fod_lightning.run import run
from helpers.configs import TINY, TINY_RUN, TINY_TEXTURES, compose_config


@pytest.mark.parametrize(("model", "overrides"), [("fod", TINY), ("patchcore", ["model=patchcore", *TINY_RUN])])
def test_thresholds_scores_and_checkpoints_are_recorded(tmp_path, model, overrides):
    cfg = compose_config(tmp_path, [*TINY_TEXTURES, *overrides, "data.category=brick", "trainer.max_epochs=2",
                                    "model.calibration.image_rule=conformal"])  # fmt: skip
    results = run(cfg)
    brick = results["categories"]["brick"]
    t = brick["thresholds"]
    assert t["image_rule"] == "conformal" and t["num_images"] >= 1 and t["image"] is not None
    assert t["statement"].startswith("a new normal image of the same kind scores at or above the image threshold")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["categories"]["brick"]["thresholds"]
    assert saved == t
    assert "### decision thresholds of the tested models" in (tmp_path / "out" / "summary.md").read_text()
    with (tmp_path / "out" / "brick" / "scores.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["image", "label", "score", "predicted", "defect_type"]
    assert len(rows) == brick["num_images"]
    for row in rows:
        assert row["predicted"] == ("anomalous" if float(row["score"]) >= t["image"] else "normal")
        assert (row["label"] == "normal") == (row["defect_type"] == "good")
    kept = sorted(p.name for p in (tmp_path / "out" / "brick" / "checkpoints").iterdir())
    assert kept == ["last.ckpt"]  # FOD: the best-epoch files only when tested with; PatchCore: one pass, one file
    assert brick["fitted_in_one_pass"] == (model == "patchcore")
