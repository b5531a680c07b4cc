"""What a job knows about itself: overrides, swept parameters, sweep, resolved config, versions.

Recorded in every ``results.json`` so that ``summarize`` can group jobs by their settings, and used for the
W&B group and tags of a sweep.
"""

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

PACKAGES = ("fod_lightning", "torch", "torchvision", "lightning", "torchmetrics", "timm", "hydra-core", "omegaconf",
            "numpy", "wandb", "optuna")  # fmt: skip


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


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config with interpolations resolved (Hydra's own node left out)."""
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}  # fmt: skip


def config_sha256(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["git"] = _git_commit()
    return found


def _git_commit() -> str | None:
    """The source checkout's commit (``+dirty`` with uncommitted changes), None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def run_record(cfg: DictConfig, output_dir: Path) -> dict:
    """The ``run`` section of ``results.json`` (status ``running`` until the job ends)."""
    info = job_info()
    config = resolved_config(cfg)
    config_file = output_dir / ".hydra" / "config.yaml"
    return {
        "status": "running",
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.get("seed"),
        "overrides": info.overrides,
        "swept": info.swept,
        "sweep_dir": info.sweep_dir,
        "job_num": info.job_num,
        "config_file": str(config_file.relative_to(output_dir)) if config_file.is_file() else None,
        "config_sha256": config_sha256(config),
        "config": config,
        "versions": versions(),
    }
