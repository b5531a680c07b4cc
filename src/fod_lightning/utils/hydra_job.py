"""Hydra's view of the running job: its overrides, the parameters a sweep varies, its sweep folder and number."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# Set for the DDP ranks that a multirun's job starts (launch.ddp_jobs): they run as single Hydra runs, and must still
# decide as their job does (which checkpoints to keep, where to resume from).
MULTIRUN_JOB = "FOD_LIGHTNING_MULTIRUN_JOB"  # the project's name, not a model's


@dataclass
class JobInfo:
    """Hydra's view of this job. Outside Hydra (plain function calls) everything is empty."""

    overrides: list[str] = field(default_factory=list)  # the job's own overrides, swept values included
    swept: dict[str, str] = field(default_factory=dict)  # parameter -> this job's value, for swept parameters
    sweep_dir: str | None = None  # set in a multirun
    job_num: int | None = None


def job_info() -> JobInfo:
    if not HydraConfig.initialized():
        return JobInfo()
    hydra_cfg = HydraConfig.get()
    overrides = [str(o) for o in hydra_cfg.overrides.task]
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return JobInfo(overrides)
    values = _key_values(overrides)
    swept = {key: values.get(key, "") for key in swept_keys(hydra_cfg)}
    return JobInfo(overrides, swept, str(hydra_cfg.sweep.dir), int(hydra_cfg.job.num))


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """Parameters the sweep varies: sweep overrides of its command line (saved by Hydra in ``multirun.yaml``)
    and the sweeper's ``params`` (Optuna's search space, the basic sweeper's ``params``)."""
    lines = [f"{k}={v}" for k, v in (OmegaConf.select(hydra_cfg, "sweeper.params") or {}).items()]
    saved = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if saved.is_file():
        lines += [str(o) for o in OmegaConf.load(saved).hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(lines)
    return sorted({o.get_key_element() for o in parsed if o.is_sweep_override()})


def _key_values(overrides: list[str]) -> dict[str, str]:
    return {
        o.get_key_element(): o.get_value_element_as_str() for o in OverridesParser.create().parse_overrides(overrides)
    }


def sweep_group(task_name: str) -> str:
    """W&B group of a job: ``<task_name>_<sweep folder name>`` in a multirun, else the task name."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"{task_name}_{Path(str(HydraConfig.get().sweep.dir)).name}"
    return task_name


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def multirun_job() -> int | None:
    """The number of this process's job in a multirun, also in a DDP rank that the job started; None outside one."""
    if (number := os.environ.get(MULTIRUN_JOB)) is not None:
        return int(number)
    return int(HydraConfig.get().job.num) if in_multirun() else None


def choice(group: str) -> str | None:
    """The option this job chose in a config group (``model`` -> ``patchcore``), None outside Hydra."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)
