"""Shared fixtures: Hydra config composition for tests."""

import atexit
import os
import shutil
import tempfile

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from helpers.configs import TINY, TINY_TEXTURES, compose_config

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


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str, tiny: bool = True, textures: bool = True):
        base = (TINY_TEXTURES if textures and tiny else []) + (TINY if tiny else [])
        return compose_config(tmp_path, base + list(overrides))

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def figures(monkeypatch):
    """Every figure the plots module saves, still open (nothing written)."""
    from fod_lightning.reporting import plots

    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig))
    yield saved
    plots.plt.close("all")
