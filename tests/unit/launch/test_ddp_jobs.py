"""DDP ranks of a multirun's job run as single Hydra runs, but decide as their job does."""

import os

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


def test_a_rank_started_by_a_multirun_job_keeps_the_checkpoints_its_job_keeps(make_config, monkeypatch):
    cfg = make_config()  # a single run: every checkpoint
    assert multirun_job() is None and kept_checkpoints(cfg) == "all"
    monkeypatch.setenv(MULTIRUN_JOB, "3")  # what a rank of job 3 of a sweep sees (before: "all", a deadlock in DDP)
    assert multirun_job() == 3 and kept_checkpoints(cfg) == "last"
    assert kept_checkpoints(make_config("test_ckpt=best")) == "all"  # the best epoch is tested: it is kept


def test_the_job_scope_tells_its_ranks_the_job_number_and_leaves_nothing_behind(make_config, monkeypatch):
    monkeypatch.delenv(MULTIRUN_JOB, raising=False)
    as_multirun_job(make_config(), 5)
    with ddp_job_scope():
        assert os.environ[MULTIRUN_JOB] == "5" and multirun_job() == 5  # inherited by the ranks Lightning starts
    assert MULTIRUN_JOB not in os.environ
