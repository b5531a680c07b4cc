"""A user's own photos on the first day: non-square inputs through run, predict and export for every model, maps at
each image's own size, and a layout mistake named (with its fix) before anything slow, leaving no run folder."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import fod_lightning
from fod_lightning.data.folder import FolderDataModule
from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.run import run
from helpers.configs import TINY, TINY_RUN, compose_config
from helpers.datasets import write_own_photos

FOLDER = ["data=folder", "data.normal_dir=good", "data.abnormal_dirs=[defects/scratch]", "data.mask_dir=masks",
          "data.mask_suffix=_mask", "data.normal_test_split=0.25", "data.num_workers=0"]  # fmt: skip
MODELS = {"fod": TINY, "patchcore": [*TINY_RUN, "model=patchcore"], "padim": [*TINY_RUN, "model=padim"]}


def fitted(tmp_path, model: str, *overrides: str):
    root = write_own_photos(tmp_path / "photos")
    cfg = compose_config(tmp_path, [*MODELS[model], *FOLDER, f"data.root={root}", "data.image_size=[32,48]",
                                    *overrides])  # fmt: skip
    results = run(cfg)
    GlobalHydra.instance().clear()
    return results, root, tmp_path / "out" / "folder" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_on_a_non_square_input_and_keeps_the_photos_shape(tmp_path, model):
    results, root, ckpt = fitted(tmp_path, model)
    assert 0.0 <= results["categories"]["folder"]["image_auroc"] <= 1.0
    loaded = fod_lightning.load(ckpt)
    assert loaded.contract.shape == (32, 48) and loaded.contract.to_dict()["image_size"] == [32, 48]
    photo = root / "defects" / "scratch" / "d0.png"
    with torch.no_grad():
        score, amap = loaded.net.score_images(loaded.contract.preprocess(photo)[None])
    assert amap.shape == (1, 32, 48)  # 48 x 64 photos at 4:3: not squashed to a square
    back = loaded.contract.map_to_image(amap[0].numpy(), 48, 64)
    assert back.shape == (48, 64) and np.isfinite(back).all()


def test_predict_and_export_of_a_non_square_model(tmp_path):
    _, root, ckpt = fitted(tmp_path, "fod")
    env = {"OMP_NUM_THREADS": "1", "PATH": ""}
    pred = subprocess.run([sys.executable, "-m", "fod_lightning.predict", f"ckpt_path={ckpt}",
                           f"input={root / 'defects'}", f"output_dir={tmp_path / 'pred'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert pred.returncode == 0, pred.stderr[-2000:]
    model = fod_lightning.load(ckpt)
    saved = np.load(tmp_path / "pred" / "maps" / "scratch" / "d0.npy")
    with torch.no_grad():
        _, amap = model.net.score_images(model.contract.preprocess(root / "defects" / "scratch" / "d0.png")[None])
    assert saved.shape == (48, 64)  # the photo's own size
    np.testing.assert_allclose(saved, model.contract.map_to_image(amap[0].numpy(), 48, 64), rtol=1e-4)  # batch of 3
    output = tmp_path / "model.onnx"
    exp = subprocess.run([sys.executable, "-m", "fod_lightning.export", f"ckpt_path={ckpt}", f"output={output}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert exp.returncode == 0, exp.stderr[-2000:]
    doc = json.loads(output.with_suffix(".json").read_text())
    assert doc["image_size"] == [32, 48] and doc["inputs"][0]["shape"] == ["batch", 3, 32, 48]
    assert doc["outputs"][1]["shape"] == ["batch", 32, 48] and max(doc["parity"]["relative_error"].values()) < 1e-4
    images = model.contract.random_images(3, seed=4)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    scores, maps = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected_scores, expected_maps = model.net.score_images(images)
    assert np.abs(maps - expected_maps.numpy()).max() / np.abs(expected_maps.numpy()).max() < 1e-4
    assert np.abs(scores - expected_scores.numpy()).max() / np.abs(expected_scores.numpy()).max() < 1e-4


def test_auto_size_keeps_the_photos_aspect(tmp_path):
    root = write_own_photos(tmp_path / "photos", size=(320, 240), n_normal=3, n_defect=1)
    datamodule = FolderDataModule(str(root), "good", "defects/scratch", mask_dir="masks", mask_suffix="_mask",
                                  image_size="auto")  # fmt: skip
    assert datamodule.contract.shape == (256, 352)  # shorter side 256, 4:3 kept (341 -> the nearest multiple of 32)
    tall = write_own_photos(tmp_path / "tall", size=(240, 320), n_normal=3, n_defect=1)
    assert FolderDataModule(str(tall), "good", "defects/scratch", image_size="auto").contract.shape == (352, 256)


def test_masks_named_as_mvtec_names_them_get_the_setting_that_finds_them_before_anything_is_built(tmp_path):
    root = write_own_photos(tmp_path / "photos")
    cfg = compose_config(tmp_path, [*TINY, *FOLDER, f"data.root={root}", "data.image_size=[32,48]",
                                    "data.mask_suffix=''"])  # fmt: skip
    with pytest.raises(DatasetLayoutError, match=r"has no mask at .*d0\.<png\|bmp\|...>, but d0_mask.png lies there: "
                                                 r"set data.mask_suffix=_mask"):  # fmt: skip
        run(cfg)
    assert not (tmp_path / "out").exists()  # stopped before training: no run folder left behind
