"""Checkpoints of earlier formats still load. ``tests/data/fod_format2_0db1c70.ckpt`` was written by fod_lightning at
0db1c70 (format 2: ``fod``/``fod_best`` entries, the module at its old path ``training.fod_module``; a tiny FOD fitted
on brick at 32 px, optimizer state removed), with the scores that code gave on two random images
(``..._scores.pt``). Format 1 is the same without the module's name, which only FOD wrote."""

from pathlib import Path

import pytest
import torch

import fod_lightning
from fod_lightning.deploy.checkpoint import read_record
from fod_lightning.training.checkpoint_format import BEST_KEY, FORMAT, META_KEY, CheckpointRecord
from fod_lightning.training.fod.module import FODLitModule

DATA = Path(__file__).resolve().parents[2] / "data"
FORMAT2 = DATA / "fod_format2_0db1c70.ckpt"


def scores_of(model) -> tuple[torch.Tensor, torch.Tensor]:
    recorded = torch.load(DATA / "fod_format2_0db1c70_scores.pt", weights_only=True)
    with torch.no_grad():
        scores, maps = model.net.score_images(recorded["images"])
    return (scores, maps.double().sum()), (recorded["scores"], recorded["map_sum"])


def test_a_format_2_checkpoint_of_the_old_module_path_loads_and_scores_as_when_it_was_written():
    record = read_record(FORMAT2)
    assert record.format == 2 and record.module == "fod_lightning.training.fod_module.FODLitModule"
    assert record.described() == {
        "category": "brick",
        "categories": None,
        "image_size": 32,
        "backbone": "tf_efficientnet_lite0",
    }  # categories: a unified model's
    model = fod_lightning.load(FORMAT2)
    assert isinstance(model, FODLitModule) and model.thresholds.image is not None
    (scores, total), (expected, expected_total) = scores_of(model)
    assert torch.allclose(scores, expected, rtol=1e-6) and float(total) == pytest.approx(float(expected_total))


def test_a_format_1_checkpoint_loads_through_the_reader_fod_registers(tmp_path):
    old = torch.load(FORMAT2, weights_only=True)
    old["fod"] = {k: v for k, v in old["fod"].items() if k != "module"} | {"format": 1}
    torch.save(old, tmp_path / "format1.ckpt")
    model = fod_lightning.load(tmp_path / "format1.ckpt")
    assert isinstance(model, FODLitModule) and model.fitted_on["category"] == "brick"
    (scores, _), (expected, _) = scores_of(model)
    assert torch.allclose(scores, expected, rtol=1e-6)


def test_a_checkpoint_saved_now_is_format_3_and_keeps_no_old_entry(tmp_path):
    model = fod_lightning.load(FORMAT2)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    assert set(checkpoint) >= {META_KEY, BEST_KEY} and "fod" not in checkpoint and "fod_best" not in checkpoint
    record = CheckpointRecord.of(checkpoint)
    assert record.format == FORMAT == 3 and record.module == "fod_lightning.training.fod.module.FODLitModule"
    assert record.thresholds == model.thresholds.calibrated and not record.backbone_in_file()
