"""What a new user meets in the first hour: fast one-line answers, lean checkpoints, a safe benchmark cache, honest
thresholds, comparable predictions, a Python API that needs no guessing, readable summaries."""

import csv
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import fod_lightning
from fod_lightning.data.textures import ensure_textures
from fod_lightning.data.transforms import read_image
from fod_lightning.errors import CheckpointError
from fod_lightning.metrics.thresholds import Thresholds
from fod_lightning.predict import predict
from fod_lightning.reporting import plots
from fod_lightning.reporting.jobs import readable
from fod_lightning.run import run
from fod_lightning.utils.config_dir import CONFIG_DIR
from helpers.configs import TINY, TINY_TEXTURES, compose_config

NOT_YET = "import sys; sys.argv = {argv!r}; import {module} as m\ntry:\n    m.main()\nexcept SystemExit as e:\n    "
NOT_YET += "print(e.code, [name for name in ('torch', 'lightning', 'timm') if name in sys.modules])"


@pytest.mark.parametrize(
    ("module", "argv"),
    [("fod_lightning.run", ["fod-run", "data.categroy=brick"]),
     ("fod_lightning.predict", ["fod-predict", "ckpt_pth=x"]),
     ("fod_lightning.export", ["fod-export", "outptu=x"])],
)  # fmt: skip
def test_commands_answer_a_typo_before_importing_torch_lightning_or_timm(module, argv, tmp_path):
    proc = subprocess.run([sys.executable, "-c", NOT_YET.format(argv=argv, module=module)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.stdout.split("\n")[0] == "2 []", proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "did you mean" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_package_face_needs_no_guessing():
    from fod_lightning import FODLitModule, load

    assert {"load", "FODLitModule", "AnomalyModule", "DataContract"} <= set(dir(fod_lightning))
    assert callable(load) and FODLitModule.__name__ == "FODLitModule"
    proc = subprocess.run([sys.executable, "-c", "import sys, fod_lightning; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.strip() == "False"  # importing the package is instant


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("lean")
    cfg = compose_config(root, [*TINY_TEXTURES, *TINY, "data.category=brick"])
    results = run(cfg)
    return cfg, results, root / "out" / "brick" / "checkpoints"


def brick_test_folder(cfg) -> Path:
    datamodule = hydra.utils.instantiate(cfg.data, category="brick")
    datamodule.prepare_data()
    return datamodule.category_root / "test"


def test_checkpoints_hold_what_the_model_learned_and_check_the_backbone_on_load(fitted, tmp_path):
    cfg, results, folder = fitted
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert not any(k.startswith("net.backbone.") for k in last["state_dict"])
    saved = last["anomaly_model"]["backbone"]
    assert not saved["in_checkpoint"] and len(saved["fingerprint"]) == 64
    model = fod_lightning.load(folder / "last.ckpt")  # the backbone rebuilt from the config, fingerprint checked
    assert not model.training and model.net.backbone.fingerprint() == saved["fingerprint"]
    # the Python API: preprocessing from the model's contract equals the evaluation transform
    image = next((brick_test_folder(cfg) / "good").glob("*.png"))
    datamodule = hydra.utils.instantiate(cfg.data, category="brick")
    expected = datamodule.contract.transform()(image=read_image(image))["image"]
    assert torch.equal(model.contract.preprocess(image), expected)
    # other backbone weights than it was fitted with: one line, nothing loaded
    last["anomaly_model"]["backbone"]["fingerprint"] = "0" * 64
    torch.save(last, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"on other tf_efficientnet_lite0 weights .*model.save_backbone=true"):
        fod_lightning.load(tmp_path / "other.ckpt")


def test_a_portable_checkpoint_keeps_the_backbone_and_a_job_keeps_the_checkpoints_asked_for(make_config, tmp_path):
    run(make_config("data.category=brick", "model.save_backbone=true", "keep_checkpoints=last"))
    folder = tmp_path / "out" / "brick" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]  # no best-epoch files
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert (
        any(k.startswith("net.backbone.") for k in last["state_dict"])
        and last["anomaly_model"]["backbone"]["in_checkpoint"]
    )
    fod_lightning.load(folder / "last.ckpt")
    cfg = make_config("data.category=brick", "keep_checkpoints=none", "overwrite=true")
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "none")
    run(cfg)
    assert not list((tmp_path / "none").rglob("*.ckpt")) and (tmp_path / "none" / "results.json").is_file()


def build(root: str, n_train: int) -> str:
    return str(ensure_textures(Path(root), n_train=n_train, n_test_good=1, n_test_per_defect=1, crop_size=32))


def test_benchmarks_of_other_sizes_get_their_own_folder_built_safely_at_the_same_time(tmp_path):
    root = tmp_path / "fod_textures"
    with multiprocessing.get_context("spawn").Pool(2) as pool:  # two jobs building the same benchmark at once
        same = pool.starmap(build, [(str(root), 3), (str(root), 3)])
    assert same[0] == same[1] and Path(same[0]).name.startswith("fod_textures-")
    before = json.loads((Path(same[0]) / "manifest.json").read_text())
    other = build(str(root), 5)
    assert other != same[0] and json.loads((Path(same[0]) / "manifest.json").read_text()) == before
    assert len(list((Path(same[0]) / "brick" / "train" / "good").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_thresholds_calibrated_on_too_few_images_say_so(fitted):
    record = {"source": "normal", "num_images": 1, "held_out": True, "image_quantile": 0.99, "min_images": 10}
    text = Thresholds(calibrated=record | {"image": 1.0}).describe("image")
    assert text.startswith("calibrated on 1 held-out normal images") and "UNRELIABLE: fewer than 10 images" in text
    assert "UNRELIABLE" not in Thresholds(calibrated=record | {"num_images": 12}).describe("image")
    _, _, folder = fitted
    assert fod_lightning.load(folder / "last.ckpt").thresholds.calibrated["num_images"] == 1  # tiny: warned


def test_predict_draws_every_overlay_on_one_scale_at_the_images_size_and_logs_what_it_did(fitted, tmp_path,
                                                                                         monkeypatch):  # fmt: skip
    cfg, _, folder = fitted
    drawn = []
    monkeypatch.setattr(
        "fod_lightning.deploy.predict.overlay",
        lambda image, amap, threshold, scale, title, path: drawn.append((image, amap, threshold, scale)),
    )
    images = sorted(brick_test_folder(cfg).glob("*/*.png"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        config = compose("predict", [f"ckpt_path={folder / 'last.ckpt'}", f"input={images[0].parents[1]}",
                                     f"output_dir={tmp_path / 'pred'}", "progress_bar=false"])  # fmt: skip
    predict(config)
    assert len(drawn) == len(images) and len({d[3] for d in drawn}) == 1  # one colour scale
    threshold = fod_lightning.load(folder / "last.ckpt").thresholds.pixel
    assert {d[2] for d in drawn} == {threshold} and drawn[0][3][0] <= threshold <= drawn[0][3][1]
    for image, amap, _, _ in drawn:
        assert amap.shape == image.shape[:2]  # the map drawn back at the image's own size
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    image_threshold = fod_lightning.load(folder / "last.ckpt").thresholds.image
    assert {r["threshold"] for r in rows} == {f"{image_threshold:.6g}"}


def test_predict_log_says_what_was_done(fitted, tmp_path):
    cfg, _, folder = fitted
    images = brick_test_folder(cfg)
    proc = subprocess.run([sys.executable, "-m", "fod_lightning.predict", f"ckpt_path={folder / 'last.ckpt'}",
                           f"input={images}", f"output_dir={tmp_path / 'p'}", "progress_bar=false"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "p" / "predict.log").read_text()
    for said in ("model FOD (FODLitModule)", "image threshold: threshold", "image(s) under", "overlays on one colour",
                 "scored 5 image(s), 0 unreadable"):  # fmt: skip
        assert said in log


def test_summaries_are_readable(figures):
    assert readable("0.27236750534100307") == "0.2724" and readable("3") == "3" and readable("bottle") == "bottle"
    from fod_lightning.reporting.tables import Stat

    tables = {"s": {"brick": {m: Stat(0.5, None, 1) for m in ("image_auroc", "pixel_auroc", "pixel_aupro",
                                                            "image_f1_max", "pixel_f1_max")},
                    "mean": {m: Stat(0.5, None, 1) for m in ("image_auroc",)}}}  # fmt: skip
    best = {"s": {"brick": {"image_auroc": Stat(0.7, None, 1)}}}
    plots.setting_bars(tables, {"s": "a long label, model.lambda1=0.2724"}, ("image_auroc", "pixel_auroc",
                       "pixel_aupro", "image_f1_max", "pixel_f1_max"), "t", None, best)  # fmt: skip
    fig = figures[0]
    panels = [ax for ax in fig.axes if ax.get_ylabel()]
    assert len(panels) == 5  # every metric
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["brick"]  # no "mean" of one category
    assert [type(c).__name__ for c in panels[0].collections].count("PathCollection") == 1  # the best reading's mark
    plots.loss_curves({"train/loss": ([0, 1, 2], [3.0, 2.0, 1.0])}, "few points", None)
    assert figures[1].axes[0].lines[0].get_marker() == "o"


def test_a_single_run_stopped_by_its_config_leaves_no_run_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fod_lightning.run", "data.category=marble",
                           f"hydra.run.dir={tmp_path}/o"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and "unknown embedded textures category 'marble'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_sweep_records_its_objective_with_each_job(make_config, tmp_path):
    results = run(make_config("data.category=brick", "data.val_protocol=from_train", "data.n_train=6",
                              "optimized_metric=val/image_auroc"))  # fmt: skip
    objective = results["run"]["objective"]
    assert objective["name"] == "val/image_auroc"
    assert objective["value"] == pytest.approx(results["categories"]["brick"]["val"]["image_auroc"])
