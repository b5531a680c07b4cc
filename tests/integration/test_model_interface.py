"""Any model that scores normalised images into (image_score, anomaly_map) runs through the same engine, predict and
export: the toy model of ``helpers/toy_model.py`` (a few lines) is added as a torch model, a LightningModule and a
Hydra config, with no change to any of them."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime

import fod_lightning
from helpers.configs import HELPERS, TESTS, TINY_TEXTURES
from helpers.toy_model import MeanImageModule

SEARCHPATH = f"hydra.searchpath=[file://{HELPERS / 'conf'}]"


def command(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_a_new_model_goes_through_run_predict_and_export(tmp_path):
    out = tmp_path / "run"
    fit = command("fod_lightning.run", SEARCHPATH, "model=mean_image", "data.category=brick", *TINY_TEXTURES,
                  "data.image_size=32", "trainer.max_epochs=1", f"paths.cache_dir={tmp_path}",
                  f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    brick = results["categories"]["brick"]
    assert results["run"]["status"] == "done" and 0.0 <= brick["image_auroc"] <= 1.0
    assert set(brick["defects"]) == {"contamination", "scratch", "stain"}
    assert (out / "brick" / "pictures" / "roc_histogram.png").is_file()
    ckpt = out / "brick" / "checkpoints" / "last.ckpt"

    # the checkpoint rebuilds alone: class, net config, fitted mean image, contract, thresholds
    model = fod_lightning.load(ckpt)
    assert isinstance(model, MeanImageModule) and not model.training
    assert model.net.mean_image.abs().sum() > 0 and model.contract.image_size == 32
    assert model.thresholds.calibrated["source"] == "normal" and model.thresholds.image is not None

    (test_images,) = tmp_path.glob("data/*/brick/test")  # the embedded benchmark's test split
    pred = command("fod_lightning.predict", f"ckpt_path={ckpt}", f"input={test_images}",
                   f"output_dir={tmp_path / 'pred'}", cwd=tmp_path)  # fmt: skip
    assert pred.returncode == 0, pred.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert rows and all(r["label"] in ("normal", "anomalous") and not r["error"] for r in rows)
    first = rows[0]
    image = model.contract.preprocess(first["image"])[None]
    score, amap = model.net.score_images(image)
    assert float(first["score"]) == float(f"{float(score):.6g}")
    saved = np.load(tmp_path / "pred" / "maps" / f"{first['output']}.npy")  # at the image's own size
    np.testing.assert_allclose(saved, model.contract.map_to_image(amap[0].numpy(), *saved.shape), rtol=1e-6)

    onnx = tmp_path / "toy.onnx"
    exp = command("fod_lightning.export", f"ckpt_path={ckpt}", f"output={onnx}", cwd=tmp_path)
    assert exp.returncode == 0, exp.stderr[-3000:]
    document = json.loads(onnx.with_suffix(".json").read_text())
    assert document["image_size"] == 32 and document["thresholds"]["image"] == model.thresholds.image
    assert max(document["parity"]["relative_error"].values()) < 1e-4
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    onnx_score, onnx_map = session.run(None, {"images": image.numpy()})
    np.testing.assert_allclose(onnx_map, amap.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(onnx_score, score.numpy(), rtol=1e-5)
