"""Fitted checkpoints rebuild alone, carry calibrated thresholds, refuse mismatched use, and score new images."""

import csv
import os
import shutil
import subprocess
import sys

import hydra
import numpy as np
import pytest
import torch
from lightning import Callback, Trainer

import fod_lightning
from fod_lightning.errors import ConfigError, UserError
from fod_lightning.run import run
from fod_lightning.training.fod.module import FODLitModule


@pytest.fixture
def fitted(make_config, tmp_path):
    """A tiny model fitted on brick: (config, results of the category, checkpoint path)."""
    cfg = make_config("data.category=brick")
    results = run(cfg)["categories"]["brick"]
    return cfg, results, tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt"


class Scores(Callback):
    """Image scores of the test split by image path, as evaluation computed them."""

    def __init__(self):
        self.scores = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.scores |= {p: float(s) for p, s in zip(batch.path, outputs.image_score)}


def test_load_from_checkpoint_alone_reproduces_the_test_metrics(fitted):
    cfg, results, ckpt = fitted
    for model in (FODLitModule.load_from_checkpoint(ckpt), fod_lightning.load(ckpt)):
        assert model.contract.to_dict() == {"image_size": 32, "resize": "square", "mean": [0.485, 0.456, 0.406],
                                  "std": [0.229, 0.224, 0.225]}  # fmt: skip
        assert model.fitted_on["category"] == "brick" and model.thresholds.calibrated["source"] == "normal"
        datamodule = hydra.utils.instantiate(cfg.data, category="brick")
        trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        (out,) = trainer.test(model, datamodule=datamodule, verbose=False)
        for name in ("image_auroc", "pixel_auroc", "pixel_aupro"):
            assert out[f"test/{name}"] == pytest.approx(results[name], rel=1e-6)


def test_each_kept_checkpoint_holds_quantiles_of_held_out_normal_images_for_its_own_weights(make_config, tmp_path):
    """Calibration is a step after fitting, for the checkpoints kept: last.ckpt and (asked for) the best-epoch ones,
    each for its own weights, none with the optimizer state."""
    cfg = make_config("data.category=brick", "trainer.max_epochs=3", "keep_checkpoints=all")
    run(cfg)
    datamodule = hydra.utils.instantiate(cfg.data, category="brick")
    held = {s.image_path for s in datamodule.split("calibration").samples}
    assert held and held.isdisjoint(s.image_path for s in datamodule.split("train").samples)
    folder = tmp_path / "out" / "brick" / "checkpoints"
    epochs = set()
    for name in ("last.ckpt", "best_image_auroc.ckpt", "best_pixel_auroc.ckpt"):
        model = fod_lightning.load(folder / name)
        scores, maps = [], []
        for batch in datamodule.calibration_dataloader():
            s, m = model.net.score_images(batch.image)
            scores.append(s.detach().numpy())
            maps.append(m.detach().numpy().ravel())
        t = model.thresholds.calibrated
        assert t["held_out"] and t["num_images"] == len(held)
        assert t["image"] == pytest.approx(np.quantile(np.concatenate(scores), 0.99), rel=1e-6), name
        assert t["pixel"] == pytest.approx(np.quantile(np.concatenate(maps), 0.999), rel=1e-6), name
        saved = torch.load(folder / name, weights_only=True)
        assert "optimizer_states" not in saved and t["epoch"] == saved["epoch"]
        assert not any(k.startswith("net.backbone.") for k in saved["state_dict"])  # lean, as when first saved
        epochs.add(saved["epoch"])
    assert 2 in epochs  # last.ckpt: the final epoch


def test_val_f1_thresholds_need_a_validation_split_that_is_not_the_test_split(make_config, tmp_path):
    with pytest.raises(ConfigError, match="val_f1 needs data.val_protocol=from_train"):
        run(make_config("data.category=brick", "model.calibration.source=val_f1"))
    run(make_config("data.category=brick", "model.calibration.source=val_f1", "data.val_protocol=from_train",
                    "data.n_train=6"))  # fmt: skip
    thresholds = fod_lightning.load(tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt").thresholds.calibrated
    assert thresholds["source"] == "val_f1" and thresholds["split"] == "validation (from_train)"
    assert thresholds["image"] is not None and thresholds["epoch"] == 0


def test_a_checkpoint_of_another_category_is_refused_unless_allowed(fitted, make_config):
    _, results, ckpt = fitted
    # data.category=all: brick is scored, grass and gravel are refused (and recorded as failed)
    with pytest.raises(UserError, match=r"fitted on category brick, not grass: set data.category .* allow_mismatch"):
        run(make_config("data.category=all", "train=false", f"ckpt_path={ckpt}"))
    with pytest.raises(ConfigError, match="fitted on image size 32, not 64"):
        run(make_config("data.category=brick", "train=false", f"ckpt_path={ckpt}", "data.image_size=64"))
    scored = run(make_config("data.category=grass", "train=false", f"ckpt_path={ckpt}", "allow_mismatch=true"))
    assert "image_auroc" in scored["categories"]["grass"]


def predict_cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fod_lightning.predict", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_predict_writes_maps_overlays_and_scores_equal_to_evaluation(fitted, tmp_path):
    cfg, _, ckpt = fitted
    datamodule = hydra.utils.instantiate(cfg.data, category="brick")
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[scores := Scores()])
    trainer.test(fod_lightning.load(ckpt), datamodule=datamodule, verbose=False)
    test_images = sorted(scores.scores)[:2]
    inputs = tmp_path / "inputs"
    for sub, source in zip(("line1", "line2"), test_images):  # the same file name in two sub-folders
        (inputs / sub).mkdir(parents=True)
        shutil.copy(source, inputs / sub / "part.png")
    (inputs / "broken.png").write_bytes(b"not an image")
    proc = predict_cli(f"ckpt_path={ckpt}", f"input={inputs}", f"output_dir={tmp_path / 'pred'}", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # one unreadable file
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "pred" / "scores.csv").open())}
    assert len(rows) == 3
    broken = rows[str(inputs / "broken.png")]
    assert broken["score"] == "" and "cannot read image" in broken["error"]
    threshold = fod_lightning.load(ckpt).thresholds.image
    for sub, source in zip(("line1", "line2"), test_images):
        row = rows[str(inputs / sub / "part.png")]
        assert float(row["score"]) == pytest.approx(scores.scores[source], rel=1e-5)
        assert row["label"] == ("anomalous" if float(row["score"]) > threshold else "normal") and not row["error"]
        amap = np.load(tmp_path / "pred" / "maps" / sub / "part.npy")
        assert amap.shape == (64, 64) and amap.dtype == np.float32  # the image's own size, not the model's 32 x 32
        assert (tmp_path / "pred" / "overlays" / sub / "part.png").stat().st_size > 0
    maps = [np.load(tmp_path / "pred" / "maps" / sub / "part.npy") for sub in ("line1", "line2")]
    assert not np.array_equal(*maps)
    # a threshold given on the command line decides the labels
    proc = predict_cli(f"ckpt_path={ckpt}", f"input={inputs}/line1", f"output_dir={tmp_path / 'p2'}", "threshold=-1",
                       cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0 and "anomalous" in (tmp_path / "p2" / "scores.csv").read_text()


def test_predict_input_errors_are_one_line(fitted, tmp_path):
    _, _, ckpt = fitted
    proc = predict_cli(f"ckpt_path={ckpt}", f"input={tmp_path}/none", f"output_dir={tmp_path}/o", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: input={tmp_path}/none names no image file" in proc.stderr
    proc = predict_cli(f"ckpt_path={tmp_path}/no.ckpt", f"input={ckpt}", f"output_dir={tmp_path}/o", cwd=tmp_path)
    assert proc.returncode == 2 and f"error: checkpoint {tmp_path}/no.ckpt does not exist" in proc.stderr


def test_legacy_zero_grad_gives_the_other_stage_a_momentum_step(make_config):
    """torch 1.13's zero-filled gradients: per image, stage 0 steps with its gradient, then stage 1 with
    its gradient while stage 0 gets a zero-gradient (momentum-only) Adam step; stage 1 has no gradient
    yet at the very first step (None, skipped)."""
    cfg = make_config("data.category=brick", "model.legacy_zero_grad=true", "+trainer.limit_train_batches=2")
    model = hydra.utils.instantiate(cfg.model)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    trainer.fit(model, datamodule=hydra.utils.instantiate(cfg.data))
    state = trainer.optimizers[0].state
    steps = [{int(state[p]["step"]) for p in stage.parameters() if p.requires_grad} for stage in model.net.stages]
    # 2 images: stage 0 stepped 2 x 2 times, stage 1 three times (not at the very first step)
    assert steps == [{4}, {3}]


def test_an_authors_checkpoint_evaluates_and_predicts_as_the_model_it_came_from(fitted, make_config, tmp_path):
    """A fitted model saved in the authors' layout (-pix.pth + .pkl) scores the test split and new images
    exactly as the model itself, through `run train=false` and through `predict`."""
    from helpers.authors_files import save_authors_files

    cfg, results, ckpt = fitted
    authors = tmp_path / "authors"
    authors.mkdir()
    save_authors_files(fod_lightning.load(ckpt).net, authors, category="brick")
    pth = authors / "brick-pix.pth"
    again = run(make_config("data.category=brick", "train=false", f"ckpt_path={pth}"))["categories"]["brick"]
    for name in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert again[name] == pytest.approx(results[name], rel=1e-6)
    with pytest.raises(ConfigError, match="fitted on category brick, not grass"):
        run(make_config("data.category=grass", "train=false", f"ckpt_path={pth}"))
    image = next(iter(sorted((tmp_path / "data").rglob("test/*/*.png"))))
    args = [f"input={image}", "model/net/backbone=tf_efficientnet_lite0"]  # brick.pkl beside the .pth, as run reads it
    ours = predict_cli(f"ckpt_path={ckpt}", f"input={image}", f"output_dir={tmp_path / 'ours'}", cwd=tmp_path)
    theirs = predict_cli(f"ckpt_path={pth}", *args, f"output_dir={tmp_path / 'theirs'}", cwd=tmp_path)
    assert ours.returncode == 0 and theirs.returncode == 0, theirs.stderr
    score = [next(csv.DictReader((tmp_path / d / "scores.csv").open()))["score"] for d in ("ours", "theirs")]
    assert float(score[1]) == pytest.approx(float(score[0]), rel=1e-5)
    stem = image.stem
    np.testing.assert_allclose(np.load(tmp_path / "theirs" / "maps" / f"{stem}.npy"),
                               np.load(tmp_path / "ours" / "maps" / f"{stem}.npy"), rtol=1e-5)  # fmt: skip
