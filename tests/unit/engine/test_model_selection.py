"""test_ckpt=best: the test split scored by the checkpoint that was best on the validation split."""

import pytest
import torch

from fod_lightning.errors import ConfigError
from fod_lightning.reporting.results import METRICS
from fod_lightning.run import run

FROM_TRAIN = ["data.category=brick", "data.n_train=6", "data.val_protocol=from_train", "data.val_fraction=0.34",
              "~callbacks.test_pictures"]  # fmt: skip


def test_best_checkpoint_chosen_on_held_out_training_images_scores_the_test_split(make_config, tmp_path):
    results = run(make_config(*FROM_TRAIN, "trainer.max_epochs=3", "test_ckpt=best"))
    brick = results["categories"]["brick"]
    tested = brick["test_ckpt"]
    assert results["test_ckpt"] == "best" and tested["used"] == "best" and tested["selected_by"] == "val/image_auroc"
    assert tested["selected_on"].startswith("held-out normal training images")  # honest: never the test split
    assert tested["epoch"] == brick["best"]["image_auroc"]["epoch"]
    assert torch.load(tested["path"], map_location="cpu", weights_only=True)["epoch"] == tested["epoch"]
    again = run(make_config(*FROM_TRAIN, "train=false", f"ckpt_path={tested['path']}"))["categories"]["brick"]
    for metric in METRICS:
        assert again[metric] == pytest.approx(brick[metric], abs=1e-9), metric


@pytest.mark.parametrize(("overrides", "error"), [
    (["test_ckpt=first"], "test_ckpt=first is unknown: use last or best"),
    (["test_ckpt=best", "train=false"], "with train=false the test uses ckpt_path"),
    (["test_ckpt=best", "test_ckpt_metric=val/pixel_aupro"], "use one of val/image_auroc, val/pixel_auroc"),
    (["optimized_metric=val/image_auroc"], "would be measured on the test split"),
])  # fmt: skip
def test_selection_switches_are_checked_before_training(make_config, tmp_path, overrides, error):
    with pytest.raises(ConfigError, match=error):
        run(make_config("data.category=brick", *overrides))
    assert not (tmp_path / "out" / "brick").exists()  # nothing was trained
