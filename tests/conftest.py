"""Shared fixtures: Hydra config composition for tests."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from fod_lightning.run import CONFIG_DIR

os.environ.setdefault("WANDB_MODE", "offline")
# Generated data and caches of every test, CLI subprocesses included, go to a throw-away folder, never the
# user's ~/.cache (the folder is shared by the session: the embedded benchmark is written once).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="fod_tests_cache_")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)
os.environ.setdefault("WANDB_SILENT", "true")
# Tiny models gain nothing from intra-op threads, and beside another busy process OpenMP's waiting threads
# slow each test several-fold (measured on 2 shared cores: a tiny fit + test 8-21 s with 2 threads, 1-2 s
# with 1). One thread here and in every subprocess (CLI runs, DDP ranks, sweep workers).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# A tiny embedded benchmark.
TINY_TEXTURES = [
    "data.n_train=4",
    "data.n_test_good=2",
    "data.n_test_per_defect=1",
    "data.crop_size=64",
]
# A tiny but complete FOD: real lite0 backbone, small transformers, one epoch, 32 px.
TINY = [
    "data.image_size=32",
    "data.eval_batch_size=4",
    "data.num_workers=0",
    "model.net.d_models=[16,32]",
    "model.net.depth=1",
    "model.net.n_heads=2",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "trainer.accelerator=cpu",
]


def compose_config(tmp_path: Path, overrides: list[str]):
    """The run config as Hydra would build it, with every output under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("run", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path)  # generated data in tmp_path/data, not the user's cache
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.hydra.runtime.output_dir = str(tmp_path / "out")
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str, tiny: bool = True, textures: bool = True):
        base = (TINY_TEXTURES if textures and tiny else []) + (TINY if tiny else [])
        return compose_config(tmp_path, base + list(overrides))

    yield make
    GlobalHydra.instance().clear()
