"""DDP ranks of a multirun's job run as single Hydra runs, but decide as their job does."""

import os

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from fod_lightning.engine.category import kept_checkpoints
from fod_lightning.launch.ddp_jobs import ddp_job_scope
from fod_lightning.utils.hydra_job import MULTIRUN_JOB, multirun_job


def as_multirun_job(cfg, number: int):
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.job.num = RunMode.MULTIRUN, number
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_a_rank_and_its_job_keep_the_same_checkpoints_whatever_the_mode(make_config, monkeypatch):
    """Which checkpoints a job keeps depends on its config alone, not on whether it runs in a multirun: the DDP ranks a
    multirun's job starts (single Hydra runs) keep the same ones as the job (a mismatch once deadlocked DDP)."""
    cfg = make_config()
    model = hydra.utils.instantiate(cfg.model)
    assert multirun_job() is None and kept_checkpoints(cfg, model) == "last"
    monkeypatch.setenv(MULTIRUN_JOB, "3")  # what a rank of job 3 of a sweep sees
    assert multirun_job() == 3 and kept_checkpoints(cfg, model) == "last"
    assert kept_checkpoints(make_config("test_ckpt=best"), model) == "all"  # the best epoch is tested: it is kept


def test_lightning_still_starts_its_ranks_through_the_private_hook_that_is_replaced():
    """Lightning has no public hook for the command of its DDP ranks under Hydra: this fails loudly if the private one
    that ddp_jobs replaces is renamed, takes other arguments, or is no longer looked up where it is replaced."""
    import inspect

    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    from fod_lightning.launch.ddp_jobs import PRIVATE_HOOK

    for module in (fabric_launcher, trainer_launcher):
        hook = getattr(module, PRIVATE_HOOK)
        assert list(inspect.signature(hook).parameters) == ["local_rank"], module.__name__
    caller = inspect.getsource(trainer_launcher._SubprocessScriptLauncher._call_children_scripts)
    assert f"{PRIVATE_HOOK}(" in caller and f".{PRIVATE_HOOK}(" not in caller  # a module-level name, looked up per call


def test_the_job_scope_tells_its_ranks_the_job_number_and_leaves_nothing_behind(make_config, monkeypatch):
    monkeypatch.delenv(MULTIRUN_JOB, raising=False)
    as_multirun_job(make_config(), 5)
    with ddp_job_scope():
        assert os.environ[MULTIRUN_JOB] == "5" and multirun_job() == 5  # inherited by the ranks Lightning starts
    assert MULTIRUN_JOB not in os.environ
