"""Nothing the project loads can run code hidden in the file, and W&B keys never reach the outputs.

Loaders tested elsewhere with planted files: run checkpoints (test_run), backbone checkpoints
(test_backbone), feature-cache files (test_feature_cache), the authors' .pth and .pkl (test_official).
"""

import os
import subprocess
import sys
import zipfile

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import fod_lightning
from fod_lightning.deploy.checkpoint import CheckpointError
from fod_lightning.run import CONFIG_DIR
from helpers.configs import TINY, TINY_TEXTURES


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


def test_files_that_are_no_torch_checkpoint_are_named_as_such(tmp_path):
    """Only a file that torch could unpickle is refused as one that could run code; a folder, a text file or a copy
    cut short is named for what it is. A plain legacy (pickle) checkpoint loads, without running code."""
    from fod_lightning.deploy.checkpoint import read_file

    run = tmp_path / "run"
    (run / "brick" / "checkpoints").mkdir(parents=True)
    for name in ("best_image_auroc.ckpt", "last.ckpt"):
        torch.save({"state_dict": {"w": torch.zeros(2)}}, run / "brick" / "checkpoints" / name)
    whole = (run / "brick" / "checkpoints" / "last.ckpt").read_bytes()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    legacy = bytearray((tmp_path / "legacy.ckpt").read_bytes())
    garbled = bytes(legacy[:40] + b"\x00" * 20 + legacy[60:])
    files = {"notes.txt": b"a text file\n", "empty.ckpt": b"", "cut.ckpt": whole[: len(whole) // 2],
             "cut_legacy.ckpt": bytes(legacy[:40]), "garbled_legacy.ckpt": garbled}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        archive.writestr("a.png", b"not torch")
    (tmp_path / "no checkpoints").mkdir()
    expected = {
        run: rf"checkpoint {run} is a folder, not a checkpoint file: set ckpt_path to a checkpoint file in it, e\.g\. "
        rf"{run}/brick/checkpoints/last\.ckpt \(2 \.ckpt files there\)$",
        tmp_path / "no checkpoints": r"is a folder, not a checkpoint file: it holds no \.ckpt file",
        tmp_path / "notes.txt": rf"^{tmp_path}/notes.txt is not a torch checkpoint file \(it starts with b'a text file",
        tmp_path / "empty.ckpt": r"empty.ckpt is not a torch checkpoint file \(an empty file; torch.save writes a zip",
        tmp_path / "images.zip": r"images.zip is not a torch checkpoint file \(a zip archive without torch's data",
        tmp_path / "cut.ckpt": r"cut.ckpt is a damaged zip archive .*: copy or write it again$",
        tmp_path / "cut_legacy.ckpt": r"cut_legacy.ckpt could not be read \(EOFError, the file ends early.*\): copy",
        tmp_path / "garbled_legacy.ckpt": r"garbled_legacy.ckpt could not be read as plain data \(Unsupported operand "
        r"0\): the file is damaged \(copy or write it again\) or holds more than tensors; it was not loaded$",
    }
    for path, message in expected.items():
        with pytest.raises(CheckpointError, match=message) as caught:
            read_file(path)
        assert "could run code" not in str(caught.value) and "\n" not in str(caught.value)
    assert torch.equal(read_file(tmp_path / "legacy.ckpt")["state_dict"]["w"], torch.ones(2))
    marker = tmp_path / "pwned"
    torch.save({"state_dict": RunsCode(marker)}, tmp_path / "evil.ckpt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="could run code"):
        read_file(tmp_path / "evil.ckpt")  # the legacy format too
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


@pytest.mark.parametrize(
    ("module", "message"),
    [("os.system", "not an AnomalyModule: not loaded"),  # a standard-library name is never imported
     ("numpy.ndarray", "not a fod_lightning AnomalyModule: not loaded"),
     ("no_such_package.Model", r"cannot be imported \(ModuleNotFoundError\): install the package")],
)  # fmt: skip
def test_a_checkpoint_naming_a_class_that_is_no_model_is_refused(tmp_path, module, message):
    from fod_lightning import load
    from fod_lightning.errors import ConfigError

    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {}},
                "fod": {"format": 2, "module": module, "contract": {"image_size": 32}}}, path)  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        load(path)
