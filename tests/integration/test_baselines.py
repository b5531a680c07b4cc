"""PatchCore and PaDiM through the same engine as FOD: one pass, the same metrics, thresholds, per-defect numbers and
results, checkpoints that rebuild alone, predict and export with parity."""

import csv
import json
import os
import subprocess
import sys

import hydra
import numpy as np
import onnxruntime
import pytest
import torch
from lightning import Trainer

import fod_lightning
from fod_lightning.models.padim import PaDiM
from fod_lightning.models.patchcore import PatchCore
from fod_lightning.run import run
from helpers.configs import TINY_RUN, TINY_TEXTURES, compose_config

MODELS = {"patchcore": PatchCore, "padim": PaDiM}


def command(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request, tmp_path_factory):
    """A tiny job of each baseline on brick (32 px; trainer.max_epochs=3, of which it needs one)."""
    root = tmp_path_factory.mktemp(request.param)
    cfg = compose_config(root, [*TINY_TEXTURES, *TINY_RUN, f"model={request.param}", "data.category=brick",
                                "trainer.max_epochs=3"])  # fmt: skip
    results = run(cfg)
    return request.param, cfg, results, root / "out" / "brick" / "checkpoints" / "last.ckpt"


def test_a_baseline_job_records_what_fod_records(fitted):
    name, _, results, ckpt = fitted
    brick = results["categories"]["brick"]
    assert results["model"] == name and results["backbone"] == "tf_efficientnet_lite0"
    assert brick["epochs"] == 1  # fitted in one pass, whatever trainer.max_epochs says
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max"):
        assert 0.0 <= brick[metric] <= 1.0
    assert set(brick["defects"]) == {"contamination", "scratch", "stain"}
    assert brick["cost"]["fit_seconds"] > 0 and brick["cost"]["score_seconds_per_image"] > 0
    assert brick["cost"]["fit_peak_rss_mib"] > 100
    assert {p.name for p in ckpt.parent.iterdir()} == {"last.ckpt"}  # fitted in one pass: one checkpoint


def test_the_checkpoint_rebuilds_alone_and_reproduces_the_test_metrics(fitted):
    name, cfg, results, ckpt = fitted
    model = fod_lightning.load(ckpt)
    assert isinstance(model.net, MODELS[name]) and not model.training
    assert model.thresholds.calibrated["source"] == "normal" and model.thresholds.calibrated["held_out"]
    assert model.contract.image_size == 32 and model.fitted_on["category"] == "brick"
    if name == "patchcore":  # the coreset of the 3 training images' 4 x 4 patches
        assert model.net.memory_bank.shape == (int(3 * 16 * 0.1), 40 + 112)
    else:
        assert model.net.mean.shape == (100, 64) and model.net.inv_covariance.shape == (64, 100, 100)
    datamodule = hydra.utils.instantiate(cfg.data, category="brick")
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (out,) = trainer.test(model, datamodule=datamodule, verbose=False)
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert out[f"test/{metric}"] == pytest.approx(results["categories"]["brick"][metric], rel=1e-6)


def test_predict_and_export_agree_with_the_model(fitted, tmp_path):
    name, cfg, _, ckpt = fitted
    model = fod_lightning.load(ckpt)
    images = sorted(p for p in (ckpt.parents[3] / "data").rglob("brick/test/*/*.png"))[:3]
    batch = torch.stack([model.contract.preprocess(p) for p in images])
    with torch.no_grad():
        scores, maps = model.net.score_images(batch)

    pred = command("fod_lightning.predict", f"ckpt_path={ckpt}", f"input={images[0].parents[1]}",
                   f"output_dir={tmp_path / 'pred'}", cwd=tmp_path)  # fmt: skip
    assert pred.returncode == 0, pred.stderr[-2000:]
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "pred" / "scores.csv").open())}
    for image, score, amap in zip(images, scores, maps):
        row = rows[str(image)]
        assert float(row["score"]) == pytest.approx(float(score), rel=1e-5)
        saved = np.load(tmp_path / "pred" / "maps" / f"{row['output']}.npy")  # at the image's own size
        np.testing.assert_allclose(saved, model.contract.map_to_image(amap.numpy(), *saved.shape), rtol=1e-5,
                                   atol=1e-6)  # fmt: skip

    onnx = tmp_path / f"{name}.onnx"
    exp = command("fod_lightning.export", f"ckpt_path={ckpt}", f"output={onnx}", cwd=tmp_path)
    assert exp.returncode == 0, exp.stderr[-2000:]
    assert max(json.loads(onnx.with_suffix(".json").read_text())["parity"]["relative_error"].values()) < 1e-4
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    onnx_scores, onnx_maps = session.run(None, {"images": batch.numpy()})
    np.testing.assert_allclose(onnx_maps, maps.numpy(), rtol=1e-4, atol=1e-4 * float(maps.abs().max()))
    np.testing.assert_allclose(onnx_scores, scores.numpy(), rtol=1e-4)
