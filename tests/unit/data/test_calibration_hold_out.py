"""The calibration hold-out is made only when it gives enough images; otherwise every image is trained on."""

import logging

import pytest

from fod_lightning.data.mvtec import MVTecADDataModule
from fod_lightning.errors import ConfigError
from helpers.datasets import write_image, write_mvtec


def mvtec_with_training_images(tmp_path, n):
    root = write_mvtec(tmp_path)
    for i in range(3, n):
        write_image(root / "bottle" / "train" / "good" / f"{i:03d}.png")
    return root


def paths(dataset):
    return [s.image_path for s in dataset.samples]


def test_too_few_calibration_images_train_on_every_image_and_say_so(tmp_path, caplog):
    root = mvtec_with_training_images(tmp_path, 20)
    dm = MVTecADDataModule(root, "bottle", image_size=32, calibration_fraction=0.1, calibration_min_images=3)
    with caplog.at_level(logging.INFO, logger="fod_lightning.data.datamodule"):
        dm.setup()
    assert len(dm.split("train")) == 20 and paths(dm.split("calibration")) == paths(dm.split("train"))
    assert not dm.calibration_held_out
    expected = ("data.calibration_fraction=0.1 would hold out 2 of the 20 training images of bottle, fewer than "
                "data.calibration_min_images=3: trained on all 20 (as the authors)")  # fmt: skip
    assert dm.calibration_skipped.startswith(expected) and expected in caplog.text


def test_enough_calibration_images_are_held_out_from_training(tmp_path):
    root = mvtec_with_training_images(tmp_path, 20)
    dm = MVTecADDataModule(root, "bottle", image_size=32, calibration_fraction=0.1, calibration_min_images=2)
    assert dm.calibration_held_out and dm.calibration_skipped is None
    held, train = paths(dm.split("calibration")), paths(dm.split("train"))
    assert len(held) == 2 and len(train) == 18 and set(held).isdisjoint(train)


def test_from_train_validation_holds_out_whatever_the_minimum(tmp_path):
    root = mvtec_with_training_images(tmp_path, 20)
    dm = MVTecADDataModule(root, "bottle", image_size=32, val_protocol="from_train", calibration_fraction=0.1,
                           calibration_min_images=10)  # fmt: skip
    assert dm.calibration_held_out and len(dm.split("calibration")) == 4 and len(dm.split("train")) == 16


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_a_bad_minimum_is_refused_with_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match=rf"data.calibration_min_images={value!r} must be a positive integer"):
        MVTecADDataModule(write_mvtec(tmp_path), "bottle", calibration_min_images=value)


def test_the_run_config_takes_the_minimum_from_the_thresholds_settings(make_config):
    assert make_config(tiny=False).data.calibration_min_images == 10
    cfg = make_config("model.calibration.min_images=4", "model=patchcore", tiny=False)
    assert cfg.data.calibration_min_images == 4
