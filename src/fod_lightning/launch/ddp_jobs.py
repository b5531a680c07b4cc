"""DDP inside the jobs of a local Hydra multirun (basic or joblib launcher).

Lightning starts ranks 1..N-1 by re-running the command line with ``hydra.run.dir`` added. In a multirun
that line is the whole sweep, so each rank would start the sweep again; here a rank re-runs its job alone,
from the job's own overrides. Lightning also leaves the process group and its environment variables set after
a job, which the next job of the same process would reuse with ranks that have exited: they are cleared.
Under SLURM the ranks are SLURM tasks (nothing is re-run) and none of this applies.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning import __version__ as lightning_version
from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

from fod_lightning.utils.hydra_job import MULTIRUN_JOB

DDP_ENVIRONMENT = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", MULTIRUN_JOB)
# Lightning offers no public hook for the command of its ranks under Hydra: its launchers call the module-level
# function _hydra_subprocess_cmd(local_rank) -> (command, cwd), which is replaced for the job's duration.
# tests/unit/launch/test_ddp_jobs.py fails if Lightning renames it or stops looking it up there.
PRIVATE_HOOK = "_hydra_subprocess_cmd"
_lightning_command = getattr(fabric_launcher, PRIVATE_HOOK, None)


def rank_command(local_rank: int) -> tuple[list[str], str]:
    """The command that starts DDP rank ``local_rank`` of the current job, and its working directory."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return _lightning_command(local_rank)
    searchpath = [str(o) for o in hydra_cfg.overrides.hydra if str(o).startswith("hydra.searchpath")]
    command = [sys.executable, "-m", "fod_lightning.run", f"--config-name={hydra_cfg.job.config_name}",
               *[str(o) for o in hydra_cfg.overrides.task], *searchpath, "hydra.mode=RUN",
               f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"', f"hydra.job.name=ddp_rank_{local_rank}",
               "hydra.output_subdir=null"]  # fmt: skip
    return command, str(hydra_cfg.runtime.cwd)


@contextmanager
def ddp_job_scope() -> Iterator[None]:
    """Around one job: DDP ranks started for it re-run this job only, and leave nothing behind for the next."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        yield
        return
    if _lightning_command is None or not hasattr(trainer_launcher, PRIVATE_HOOK):
        raise RuntimeError(f"lightning {lightning_version} has no {PRIVATE_HOOK}, through which the DDP ranks of "
                           "a multirun's job re-run it: use a Lightning fod_lightning was tested with")  # fmt: skip
    before = {k: os.environ.get(k) for k in DDP_ENVIRONMENT}
    launchers = {module: getattr(module, PRIVATE_HOOK) for module in (fabric_launcher, trainer_launcher)}
    for module in launchers:
        setattr(module, PRIVATE_HOOK, rank_command)
    os.environ[MULTIRUN_JOB] = str(HydraConfig.get().job.num)  # the ranks decide as their job does
    try:
        yield
    finally:
        for module, hook in launchers.items():
            setattr(module, PRIVATE_HOOK, hook)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
