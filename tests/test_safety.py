"""Nothing the project loads can run code hidden in the file, and W&B keys never reach the outputs.

Loaders tested elsewhere with planted files: run checkpoints (test_run), backbone checkpoints
(test_backbone), feature-cache files (test_feature_cache), the authors' .pth and .pkl (test_official).
"""

import os
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import fod_lightning
from conftest import TINY, TINY_TEXTURES
from fod_lightning.checkpoint import CheckpointError
from fod_lightning.run import CONFIG_DIR


class RunsCode:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_fitted_model_loading_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    for payload in ({"state_dict": RunsCode(marker)}, RunsCode(marker)):
        torch.save(payload, tmp_path / "evil.ckpt")
        with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'evil.ckpt'} .* could run code"):
            fod_lightning.load(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_configs_with_python_tags_are_refused(tmp_path):
    """YAML is read with a safe loader: python object tags are errors, never constructors."""
    marker = tmp_path / "pwned"
    yaml = f"# @package _global_\nseed: !!python/object/apply:os.system ['touch {marker}']\n"
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "evil.yaml").write_text(yaml)
    with pytest.raises(Exception, match="python/object"):
        OmegaConf.load(tmp_path / "experiment" / "evil.yaml")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        with pytest.raises(Exception, match="python/object"):
            compose("run", overrides=[f"hydra.searchpath=[file://{tmp_path}]", "experiment=evil"])
    GlobalHydra.instance().clear()
    assert not marker.exists()


def test_wandb_keys_never_reach_logs_configs_or_outputs(tmp_path):
    key = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B API key
    env = dict(os.environ, WANDB_API_KEY=key, WANDB_MODE="offline", OMP_NUM_THREADS="1",
               XDG_CACHE_HOME=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))  # fmt: skip
    args = [*TINY_TEXTURES, *TINY, "data.category=brick", "logger=wandb", f"hydra.run.dir={tmp_path}/run",
            f"paths.data_dir={tmp_path}/data"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "fod_lightning.run", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert key not in proc.stdout + proc.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written)  # the offline W&B run is there
    assert not [p for p in written if key.encode() in p.read_bytes()]
