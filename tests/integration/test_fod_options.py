"""FOD's options beyond the paper: each off by default (the faithful model unchanged), each through a run, its
checkpoint and the export."""

import csv

import hydra
import pytest
from hydra import compose, initialize_config_dir
from lightning import Trainer

import fod_lightning
from fod_lightning.export import export
from fod_lightning.run import run
from fod_lightning.utils.config_dir import CONFIG_DIR
from helpers.configs import TINY, TINY_TEXTURES, compose_config


def test_the_patch_memory_trains_reloads_and_exports(tmp_path):
    cfg = compose_config(tmp_path, [*TINY_TEXTURES, *TINY, "data.category=brick", "model.net.memory_weight=0.5",
                                    "model.net.memory_ratio=0.5"])  # fmt: skip
    results = run(cfg)["categories"]["brick"]
    ckpt = tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt"
    model = fod_lightning.load(ckpt)
    assert model.net.memory_weight == 0.5 and model.net.memory.stage0.shape == (int(3 * 16 * 0.5), 40)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (out,) = trainer.test(model, datamodule=hydra.utils.instantiate(cfg.data, category="brick"), verbose=False)
    assert out["test/image_auroc"] == pytest.approx(results["image_auroc"], rel=1e-6)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'memory.onnx'}"])
    document = export(config)
    assert max(document["parity"]["relative_error"].values()) < 1e-4


def test_branch_analysis_logs_every_branch_of_every_stage_per_epoch(tmp_path):
    run(compose_config(tmp_path, [*TINY_TEXTURES, *TINY, "data.category=brick", "trainer.max_epochs=2",
                                  "model.branch_analysis=true"]))  # fmt: skip
    with (tmp_path / "out" / "brick" / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_branch/stage0/inter/image_auroc")]
    assert [int(float(r["epoch"])) for r in rows] == [0, 1]
    for stage in (0, 1):
        for score in ("rec", "intra", "inter"):
            for value in ("image_auroc", "normal_mean", "anomalous_mean"):
                assert float(rows[-1][f"val_branch/stage{stage}/{score}/{value}"]) >= 0
    # off by default: no such column, and the same model as before (the fixed job checks its numbers)
    default = compose_config(tmp_path / "d", [*TINY_TEXTURES, *TINY])
    assert default.model.branch_analysis is False and default.model.net.memory_weight == 0.0


def test_other_backbone_levels_train_reload_and_export(tmp_path):
    """The backbone-levels lever: model.net.backbone.strides (one transformer per stride) with a width per stage."""
    levels = ["model.net.backbone.strides=[8,16,32]", "model.net.d_models=[16,32,32]"]
    cfg = compose_config(tmp_path, [*TINY_TEXTURES, *TINY, "data.category=brick", "data.image_size=64", *levels])
    results = run(cfg)["categories"]["brick"]
    ckpt = tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt"
    model = fod_lightning.load(ckpt)
    assert model.net.backbone.strides == (8, 16, 32) and model.net.backbone.channels == (40, 112, 320)
    assert [stage.projection.out_features for stage in model.net.stages] == [40, 112, 320]
    assert [tuple(model.net.reference.tokens(i).shape) for i in range(3)] == [(1, 64, 40), (1, 16, 112), (1, 4, 320)]
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (out,) = trainer.test(model, datamodule=hydra.utils.instantiate(cfg.data, category="brick"), verbose=False)
    assert out["test/image_auroc"] == pytest.approx(results["image_auroc"], rel=1e-6)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'levels.onnx'}"])
    assert max(export(config)["parity"]["relative_error"].values()) < 1e-4
    default = compose_config(tmp_path / "d", [*TINY_TEXTURES, *TINY])
    assert list(default.model.net.backbone.strides) == [8, 16]  # the authors' two stages stay the default
