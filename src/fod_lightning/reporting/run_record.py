"""What a job knows about itself: overrides, swept parameters, sweep, resolved config, versions.

Recorded in every ``results.json`` so that ``summarize`` can group jobs by their settings, and used for the
W&B group and tags of a sweep.
"""

import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fod_lightning.utils.hydra_job import job_info

PACKAGES = ("fod_lightning", "torch", "torchvision", "lightning", "torchmetrics", "timm", "hydra-core", "omegaconf",
            "numpy", "wandb", "optuna")  # fmt: skip


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
