"""Configuration mistakes stop before any model is built, with a short message and a non-zero exit code.

Unknown group options and keys are Hydra's to report (exit code 1, a few lines, no traceback unless
HYDRA_FULL_ERROR=1); what Hydra cannot know is checked by ``run.check_config`` (exit code 2, one ``error:`` line).
"""

import os
import subprocess
import sys

import pytest
import torch

from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.data.transforms import check_image_size
from fod_lightning.errors import ConfigError
from fod_lightning.run import check_config, run


def cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "fod_lightning.run", *args, f"hydra.run.dir={cwd}/o"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


HYDRA_ERRORS = {  # override: what Hydra's message says
    "data=nope": ["Could not find 'data/nope'", "Available options in 'data':", "\tmvtec", "\tvisa"],
    "model/net/backbone=nope": ["Could not find 'model/net/backbone/nope'", "\twide_resnet50_2"],
    "data.nope=1": ["Could not override 'data.nope'", "Key 'nope' is not in struct"],
    "data.root=/data/müdata": ["LexerNoViableAltException: data.root=/data/müdata", "override_grammar"],
}


@pytest.mark.parametrize(  # a CLI start costs seconds: one in the fast suite
    "override", [o if o == "data=nope" else pytest.param(o, marks=pytest.mark.slow) for o in HYDRA_ERRORS]
)
def test_hydra_reports_unknown_options_and_keys_in_a_few_lines(tmp_path, override):
    proc = cli(override, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 20, proc.stderr
    for text in HYDRA_ERRORS[override]:
        assert text in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing ran


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
    says = r"must be a positive multiple of 16 \(the backbone's strides 8, 16 must tile the input\)"
    with pytest.raises(ConfigError, match=rf"^data.image_size={size!r} {says}: e.g. data.image_size={near}$"):
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
