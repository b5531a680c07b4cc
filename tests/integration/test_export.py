"""The export entry: a tiny fitted model to ONNX, checked independently with onnxruntime."""

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import fod_lightning
import fod_lightning.deploy.onnx as export_module
from fod_lightning.deploy.checkpoint import CheckpointError
from fod_lightning.deploy.onnx import ParityError
from fod_lightning.export import export
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.run import CONFIG_DIR, run
from helpers.authors_files import SIZE, authors_like_fod, save_authors_files
from helpers.configs import TINY, TINY_TEXTURES, compose_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """last.ckpt of a tiny model fitted on brick (32 px), shared by this module's tests."""
    root = tmp_path_factory.mktemp("fit")
    run(compose_config(root, TINY_TEXTURES + TINY + ["data.category=brick"]))
    GlobalHydra.instance().clear()
    return root / "out" / "brick" / "checkpoints" / "last.ckpt"


def export_cli(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fod_lightning.export", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def export_config(*overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("export", overrides=list(overrides))


def relative_error(actual: np.ndarray, expected: torch.Tensor) -> float:
    """max|actual - expected| / max|expected|, as the export's parity check."""
    return float(np.abs(actual - expected.numpy()).max() / np.abs(expected.numpy()).max())


def test_exported_onnx_matches_the_torch_model_at_any_batch_size_and_carries_its_contract(ckpt, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    output = tmp_path / "new" / "folder" / "model.onnx"
    proc = export_cli(f"ckpt_path={ckpt}", f"output={output}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in output.parent.iterdir()) == ["model.json", "model.onnx"]  # no temporary files
    assert not any(cwd.iterdir())  # no Hydra folder or log file

    model = fod_lightning.load(ckpt)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["image_score", "anomaly_map"]
    for batch, seed in ((1, 10), (3, 11)):  # neither is the traced batch size (2)
        images = model.contract.random_images(batch, seed)
        with torch.no_grad():
            expected = model.net.score_images(images)
        actual = session.run(["image_score", "anomaly_map"], {"images": images.numpy()})
        assert actual[0].shape == (batch,) and actual[1].shape == (batch, 32, 32)
        for a, e in zip(actual, expected):
            assert relative_error(a, e) < 1e-4

    doc = json.loads(output.with_suffix(".json").read_text())
    assert {k: doc[k] for k in ("image_size", "resize", "mean", "std")} == model.contract.to_dict()
    assert doc["thresholds"] == {"image": model.thresholds.image, "pixel": model.thresholds.pixel}
    assert doc["fitted_on"] == model.fitted_on and doc["fitted_on"]["category"] == "brick"
    assert doc["inputs"] == [{"name": "images", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert [(o["name"], o["shape"]) for o in doc["outputs"]] == [("image_score", ["batch"]),
                                                                  ("anomaly_map", ["batch", 32, 32])]  # fmt: skip
    assert doc["opset"] == 18 and doc["fod_lightning_version"] == fod_lightning.__version__
    assert all(0 <= e < 1e-4 for e in doc["parity"]["relative_error"].values())
    assert f"exported {output}" in proc.stdout


def test_an_unknown_format_or_checkpoint_is_a_one_line_error(ckpt, tmp_path):
    proc = export_cli(f"ckpt_path={ckpt}", f"output={tmp_path}/m.onnx", "format=tflite", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: format=tflite is not supported: use one of onnx"
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path}/no.ckpt does not exist"):
        export(export_config(f"ckpt_path={tmp_path}/no.ckpt", f"output={tmp_path}/m.onnx"))
    assert not any(tmp_path.glob("m.*"))


def test_a_failed_parity_check_leaves_no_file(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "export_onnx", lambda module, example, path, opset: path.write_bytes(b"x"))
    monkeypatch.setattr(export_module, "onnx_parity", lambda *_: {"image_score": 3e-4, "anomaly_map": 1e-7})
    with pytest.raises(ParityError, match=r"relative error image_score 3.00e-04 > rtol=0.0001; nothing was written"):
        export(export_config(f"ckpt_path={ckpt}", f"output={tmp_path}/out/m.onnx"))
    assert not any((tmp_path / "out").iterdir())


def test_an_authors_checkpoint_exports_after_its_parity_check(tmp_path):
    """The authors' <class>-pix.pth + <class>.pkl go through the same loader and the same parity check."""
    backbone = FeatureExtractor("tf_efficientnet_lite0", weights="efficientnet_lite0_package")
    net = authors_like_fod(backbone)
    ckpt = save_authors_files(net, tmp_path)
    output = tmp_path / "authors.onnx"
    proc = export_cli(f"ckpt_path={ckpt}", "model/net/backbone=tf_efficientnet_lite0", f"output={output}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(output.with_suffix(".json").read_text())
    assert doc["image_size"] == SIZE and doc["fitted_on"]["category"] == "bottle" and doc["thresholds"] is None
    assert max(doc["parity"]["relative_error"].values()) < 1e-4
    images = torch.randn(3, 3, SIZE, SIZE)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    scores, maps = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected_scores, expected_maps = net.score_images(images)
    assert relative_error(maps, expected_maps) < 1e-4 and relative_error(scores, expected_scores) < 1e-4
