"""Configuration mistakes stop before any model is built, with a short message and a non-zero exit code.

Unknown group options and keys are found on the command line before Hydra or torch starts
(``utils/command_line.py``), settings Hydra cannot know (values, keys added with ``+``) by ``engine/checks.py``: both
end in one ``error:`` line naming the key and the closest valid one, exit code 2.
"""

import os
import subprocess
import sys

import pytest
import torch

from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.data.transforms import check_image_size
from fod_lightning.engine.checks import check_config
from fod_lightning.errors import ConfigError
from fod_lightning.run import run


def cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "fod_lightning.run", *args, f"hydra.run.dir={cwd}/o"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


COMMAND_LINE_ERRORS = {  # override: the one line
    "data=nope": "data=nope is not an option of data: options are btad, folder, mvtec, mvtec3d, mvtec_ad2, textures, "
    "visa",
    "model/net/backbone=wide_resnet": "model/net/backbone=wide_resnet is not an option of model/net/backbone: did you "
    "mean model/net/backbone=wide_resnet50_2?",
    "data.nope=1": "data.nope is not a setting: data has ",
    "data.categroy=brick": "data.categroy is not a setting: did you mean data.category?",
    "lambda1=0.3": "lambda1 is not a setting: did you mean model.lambda1?",
    "seed=1,2": "seed=1,2 lists several values: add -m to run one job per value (a multirun)",
    "data.root=/data/müdata": "cannot read the command line: ",
}


@pytest.mark.parametrize(  # a CLI start costs a second: two in the fast suite
    "override",
    [o if o in ("data=nope", "data.categroy=brick") else pytest.param(o, marks=pytest.mark.slow)
     for o in COMMAND_LINE_ERRORS],
)  # fmt: skip
def test_mistakes_on_the_command_line_are_one_line_with_the_closest_valid_name(tmp_path, override):
    proc = cli(override, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert proc.stderr.startswith(f"error: {COMMAND_LINE_ERRORS[override]}")
    assert not (tmp_path / "o").exists()  # nothing ran


def test_a_key_added_with_plus_must_be_a_setting_of_what_it_builds(make_config):
    with pytest.raises(
        ConfigError, match=r"^model.lamda1 is not a setting of FODLitModule: did you mean model.lambda1"
    ):
        check_config(make_config("+model.lamda1=0.5"))
    with pytest.raises(
        ConfigError, match=r"trainer.max_epoch is not a setting of Trainer: did you mean trainer.max_epo"
    ):
        check_config(make_config("+trainer.max_epoch=2"))


def test_a_preset_without_data_root_stops_before_the_backbone_is_built(tmp_path):
    """paper_mvtec's wide_resnet50_2 weights come from the hub: the missing root is reported first, not a download."""
    proc = cli("experiment=paper_mvtec", "data.category=bottle", f"paths.data_dir={tmp_path}/data", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    root = tmp_path / "data" / "mvtec_anomaly_detection"
    assert line.startswith(f"error: MVTec AD root {root} does not exist: set data.root")
    assert "huggingface" not in proc.stderr and "pretrained weights" not in proc.stderr


@pytest.mark.parametrize("data", ["mvtec", "btad", "mvtec3d", "visa", "folder"])
def test_a_missing_root_is_checked_before_the_model_is_built(make_config, tmp_path, monkeypatch, data):
    from fod_lightning.models.backbone import FeatureExtractor

    def built(*args, **kwargs):
        raise AssertionError("the backbone was built before the data root was checked")

    monkeypatch.setattr(FeatureExtractor, "__init__", built)
    category = {"mvtec": "bottle", "btad": "01", "mvtec3d": "bagel", "visa": "candle", "folder": "mine"}[data]
    cfg = make_config(f"data={data}", f"data.root={tmp_path}/nowhere", f"data.category={category}", textures=False)
    with pytest.raises(DatasetLayoutError, match=f"root {tmp_path}/nowhere does not exist: set data.root"):
        run(cfg)
    check_config(make_config(f"data.root={tmp_path}/generated_later"))  # the embedded benchmark writes its root


@pytest.mark.parametrize("size", [100, 0, -16, 8, 24, 256.0, "256"])
def test_an_image_size_the_backbone_cannot_tile_stops_with_one_line(make_config, size):
    near = {100: 96, 0: 16, -16: 16, 8: 16, 24: 32, 256.0: 256, "256": 256}[size]
    cfg = make_config(f"data.image_size={size!r}" if isinstance(size, str) else f"data.image_size={size}")
    says = (
        r"must be a positive multiple of 16 \(the backbone's strides 8, 16 must tile the input\), or \[H, W\] for "
        r"a non-square input"
    )
    with pytest.raises(ConfigError, match=rf"^data.image_size={size!r} {says}: e.g. data.image_size={near}$"):
        check_config(cfg)


@pytest.mark.parametrize(
    ("size", "message"),
    [("[240,320]", None), ("[240,100]", r"data.image_size=\[240, 100\]: 100 must be a positive multiple of 16 .*e.g. "
                                        r"data.image_size=\[240,96\]$"),
     ("[240,320,3]", r"must be one side S or two, \[H, W\]")],
)  # fmt: skip
def test_a_non_square_input_is_two_sides_each_checked(make_config, size, message):
    """[H, W] is accepted when both sides tile (the error once said "a positive multiple of 16" of [240, 320]); a side
    that does not is named, with the nearest sizes that do."""
    cfg = make_config(f"data.image_size={size}")
    if message is None:
        check_config(cfg)
    else:
        with pytest.raises(ConfigError, match=message):
            check_config(cfg)


def test_image_sizes_that_tile(make_config):
    for size in (16, 32, 48, 256):  # 16: stride-16 maps of 1 x 1, degenerate but computed
        check_image_size(size)
    with pytest.raises(ConfigError, match="positive multiple of 32 .*strides 8, 32 .* e.g. data.image_size=64"):
        check_config(make_config("model.net.backbone.strides=[8,32]", "data.image_size=48"))


def test_an_unknown_backbone_stops_with_one_line_suggesting_names(make_config):
    says = r"is not a timm model: did you mean wide_resnet50_2, .*timm.list_models\('\*resnet\*'\) lists the names"
    with pytest.raises(ConfigError, match=rf"^model.net.backbone.name='wide_resnet50' {says}"):
        check_config(make_config("model.net.backbone.name=wide_resnet50"))
    with pytest.raises(ConfigError, match=r"^model.net.backbone.name='zzqx' is not a timm model: timm.list_models"):
        check_config(make_config("model.net.backbone.name=zzqx"))
    check_config(make_config("model.net.backbone.name=resnet18.a1_in1k"))  # a pretrained tag is a valid name
    check_config(make_config("model.net.backbone.name='hf-hub:timm/resnet18.a1_in1k'"))  # timm reads the hub's


def test_an_accelerator_this_machine_lacks_stops_with_one_line(make_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=gpu asks for 1 device\(s\) but torch finds 0 on this "
                                          r"machine: use trainer=cpu or trainer.accelerator=auto$"):  # fmt: skip
        check_config(make_config("trainer=gpu", tiny=False))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_config(make_config("trainer=gpu", tiny=False))
    with pytest.raises(ConfigError, match=r"asks for 2 device\(s\) but torch finds 1 .*, or trainer.devices=1$"):
        check_config(make_config("trainer=gpu", "trainer.devices=2", tiny=False))
    with pytest.raises(ConfigError, match=r"asks for 2 device\(s\)"):
        check_config(make_config("trainer=gpu", "trainer.devices=[0,1]", tiny=False))
    check_config(make_config("trainer=ddp", tiny=False))  # accelerator auto: Lightning picks what there is


BAD_VALUES = {  # override: the start of its one line (each one names the key, the value and the fix)
    "data.batch_size=0": r"data.batch_size=0 must be a positive integer \(images per training batch\): e.g. "
    r"data.batch_size=1$",
    "data.batch_size=2.5": r"data.batch_size=2.5 must be a positive integer",
    "data.eval_batch_size=-4": r"data.eval_batch_size=-4 must be a positive integer \(images per evaluation batch\)",
    "data.eval_batch_size=null": r"data.eval_batch_size=None must be a positive integer",
    "data.num_workers=-1": r"data.num_workers=-1 must be a non-negative integer .*: e.g. data.num_workers=2$",
    "seed=abc": r"seed='abc' must be an integer from 0 to 4294967295: e.g. seed=3407",
    "seed=1.5": r"seed=1.5 must be an integer",
    "seed=-1": r"seed=-1 must be an integer from 0 to 4294967295",
    "seed=true": r"seed=True must be an integer",
    "seed=null": r"seed=None must be an integer",
    "model.optimizer.lr=-1": r"model.optimizer.lr=-1 must be a positive number: e.g. model.optimizer.lr=1e-4",
    "model.optimizer.lr=0": r"model.optimizer.lr=0 must be a positive number",
    "model.optimizer.lr=abc": r"model.optimizer.lr='abc' must be a positive number",
    "model.optimizer.lr=nan": r"model.optimizer.lr=nan must be a positive number",
    "+model.optimizer.betas=[1.5,0.9]": r"model.optimizer \(torch.optim.Adam\) refuses its settings: Invalid beta "
    r"parameter at index 0: 1.5; fix that key under model.optimizer$",
    "+model.optimizer.weight_decay=-1": r"model.optimizer \(torch.optim.Adam\) refuses .*Invalid weight_decay value",
    "+model.optimizer.nope=1": r"model.optimizer.nope is not a setting of Adam: its settings are params, lr, betas",
    "model.optimizer._target_=torch.optim.Nope": r"model.optimizer \(torch.optim.Nope\) refuses its settings: Error "
    r"locating target 'torch.optim.Nope'; fix that key under model.optimizer$",
    "trainer.max_epochs=0": r"trainer.max_epochs=0 trains nothing, so the test would score an untrained model: set "
    r"trainer.max_epochs >= 1, or score a fitted model with train=false ckpt_path=FILE$",
    "trainer.max_epochs=-5": r"trainer.max_epochs=-5 must be a positive integer \(or -1, no epoch limit, with "
    r"trainer.max_steps or trainer.max_time bounding the run\): e.g. trainer.max_epochs=100$",
    "trainer.max_epochs=2.5": r"trainer.max_epochs=2.5 must be a positive integer",
    "trainer.max_epochs=-1": r"trainer.max_epochs=-1 \(no epoch limit\) would train without end: bound the run with "
    r"trainer.max_steps or trainer.max_time, or set trainer.max_epochs >= 1$",
    "+trainer.max_steps=0": r"trainer.max_steps=0 must be a positive integer, or -1 \(no step limit\); .*train=false",
}


@pytest.mark.parametrize("override", BAD_VALUES)
def test_a_bad_loader_seed_optimizer_or_epoch_setting_stops_with_one_line(make_config, override):
    with pytest.raises(ConfigError, match="^" + BAD_VALUES[override]) as caught:
        check_config(make_config(override))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.num_workers=0", "data.batch_size=8", "seed=0", "model.optimizer.lr=1"],
        ["seed=4294967295", "model.optimizer.lr=3e-4", "+model.optimizer.weight_decay=0.01"],
        ["model.optimizer._target_=torch.optim.SGD", "+model.optimizer.momentum=0.9"],
        ["trainer.max_epochs=null"],  # Lightning's default budget
        ["trainer.max_epochs=-1", "+trainer.max_steps=10"],  # bounded by steps
        ["trainer.max_epochs=-1", "+trainer.max_time=00:00:10:00"],  # bounded by time
        ["train=false", "trainer.max_epochs=0"],  # nothing is trained: the epoch budget does not matter
    ],
)
def test_good_loader_seed_optimizer_and_epoch_settings_pass(make_config, overrides):
    check_config(make_config(*overrides))


def test_test_ckpt_best_without_a_validation_epoch_is_refused_before_fitting(make_config):
    says = r"^test_ckpt=best needs a validation epoch measuring test_ckpt_metric=val/image_auroc, but "
    never = ["test_ckpt=best", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=4"]
    late = r"trainer.check_val_every_n_epoch=4 > trainer.max_epochs=3 runs none: "
    fix = r"set trainer.check_val_every_n_epoch <= trainer.max_epochs, or test_ckpt=last$"
    with pytest.raises(ConfigError, match=says + late + fix):
        check_config(make_config(*never))
    with pytest.raises(ConfigError, match=says + r"trainer.limit_val_batches=0 runs none: raise it, or test_ckpt=last"):
        check_config(make_config("test_ckpt=best", "+trainer.limit_val_batches=0"))
    check_config(make_config("test_ckpt=best", "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=4"))
    check_config(make_config(*never[1:]))  # test_ckpt=last scores the final model: validation is not needed


def test_a_bad_batch_size_on_the_command_line_ends_in_one_error_line(tmp_path):
    proc = cli("data.batch_size=0", "data.category=brick", f"paths.data_dir={tmp_path}/data", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: data.batch_size=0 must be a positive integer (images per training batch): e.g. "
                      "data.batch_size=1"], proc.stderr[-2000:]  # fmt: skip
    assert not (tmp_path / "o").exists()  # stopped before anything was built, and no empty run folder left


@pytest.mark.parametrize(
    ("override", "new"),
    [("model._target_=fod_lightning.lit_module.FODLitModule", "fod_lightning.training.fod.module.FODLitModule"),
     ("callbacks.test_pictures._target_=fod_lightning.callbacks.pictures.TestPictures",
      "fod_lightning.training.callbacks.pictures.TestPictures")],
)  # fmt: skip
def test_a_class_path_from_before_the_layered_layout_names_the_new_one(make_config, override, new):
    with pytest.raises(ConfigError, match=rf"_target_=.* has moved: use {new}$"):
        check_config(make_config(override))
