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


def test_early_stopping_stops_when_the_held_out_metric_stops_improving(tmp_path):
    cfg = compose_config(tmp_path, [*TINY_TEXTURES, *TINY, "data.category=brick", "data.val_protocol=from_train",
                                    "trainer.max_epochs=6", "early_stopping_patience=1"])  # fmt: skip
    results = run(cfg)["categories"]["brick"]
    with (tmp_path / "out" / "brick" / "metrics.csv").open(newline="") as f:
        history = [float(r["val/image_auroc"]) for r in csv.DictReader(f) if r.get("val/image_auroc")]
    # patience 1: training ends at the first validation that does not beat every earlier one
    stop = next(e for e in range(1, 7) if e == 6 or history[e] <= max(history[:e]))
    assert stop < 5 and len(history) == stop + 1 and results["epochs"] == stop + 1


def test_early_stopping_is_refused_on_the_test_split_and_for_bad_values(tmp_path):
    from fod_lightning.engine.checks import check_config
    from fod_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="early_stopping_patience stops on test_ckpt_metric=val/image_auroc, which "
                                          "under data.val_protocol=paper is measured on the test split"):  # fmt: skip
        check_config(compose_config(tmp_path, [*TINY_TEXTURES, *TINY, "early_stopping_patience=2"]))
    with pytest.raises(ConfigError, match="early_stopping_patience=0 must be a positive integer"):
        check_config(compose_config(tmp_path, [*TINY_TEXTURES, *TINY, "data.val_protocol=from_train",
                                               "early_stopping_patience=0"]))  # fmt: skip
    assert compose_config(tmp_path, [*TINY_TEXTURES, *TINY]).early_stopping_patience is None  # off: the authors'
