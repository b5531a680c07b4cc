"""``ckpt_path=last``: which earlier run a job resumes, and each category's checkpoint in it."""

import csv
import logging
import warnings
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, open_dict

from fod_lightning.errors import ConfigError
from fod_lightning.utils.hydra_job import multirun_job

log = logging.getLogger(__name__)
LAST_CKPTS = "*/checkpoints/last.ckpt"  # <category>/checkpoints/last.ckpt in a run folder


def category_config(cfg: DictConfig, category: str, resumed: Path | None = None) -> DictConfig:
    """The job's config for one category; ``ckpt_path=last`` becomes the category's ``last.ckpt`` in the
    ``resumed`` run folder, or nothing (trained afresh) if the category had not started there."""
    category_cfg = cfg.copy()
    with open_dict(category_cfg):
        category_cfg.data.category = category
        if cfg.get("ckpt_path") == "last":
            last = resumed / category / "checkpoints" / "last.ckpt"
            category_cfg.ckpt_path = str(last) if last.is_file() else None
            if category_cfg.ckpt_path is None:
                log.info("category %s has no last.ckpt in %s: trained afresh", category, resumed)
    return category_cfg


def resumed_run(cfg: DictConfig) -> Path:
    """The one run ``ckpt_path=last`` resumes: this run folder if it holds a category's ``last.ckpt``, else the
    earlier run of this task (``<log_dir>/<task_name>/runs/*``; in a multirun: the same job number of earlier
    sweeps) with the newest one. Never a mix of runs: a category without a checkpoint there starts afresh."""
    own = Path(cfg.paths.output_dir)
    if any(own.glob(LAST_CKPTS)):
        return own
    task = Path(cfg.paths.log_dir) / cfg.task_name
    pattern = "runs/*" if (job := multirun_job()) is None else f"multiruns/*/{job}"
    newest = {run: max(p.stat().st_mtime for p in ckpts) for run in task.glob(pattern)
              if run != own and (ckpts := list(run.glob(LAST_CKPTS)))}  # fmt: skip
    if not newest:
        raise ConfigError(
            f"ckpt_path=last found no <category>/checkpoints/last.ckpt in {own} or in earlier runs under {task}: "
            "give the checkpoint's path, or start without ckpt_path"
        )
    return max(newest, key=newest.get)


HISTORY = "metrics.csv"  # the CSV logger's file in <run folder>/<category>/
LOG_DIR_WARNING = r"Experiment logs directory .* exists and is not empty"


def earlier_history(log_dir: Path, last_epoch: int | None) -> list[dict]:
    """The rows of a resumed category's ``metrics.csv`` up to the checkpoint's epoch (later rows were logged after
    it, by the run that stopped), as the CSV logger records them; the file is set aside (``.metrics.csv.earlier``),
    since the logger starts it afresh. The caller hands the rows to the new logger: one history per category."""
    history = log_dir / HISTORY
    if not history.is_file():
        return []
    last_epoch = -1 if last_epoch is None else last_epoch
    with history.open(newline="") as f:
        rows = [{k: int(float(v)) if k in ("epoch", "step") else float(v) for k, v in row.items() if v}
                for row in csv.DictReader(f)]  # fmt: skip
    history.replace(log_dir / f".{HISTORY}.earlier")
    return [r for r in rows if r.get("epoch", last_epoch) <= last_epoch]


def continue_history(loggers: list, rows: list[dict]) -> None:
    """A resumed category's CSV logger starts with the earlier rows (written with this run's); its folder is not
    empty (checkpoints, the set-aside history), and Lightning's warning that files there will be deleted does not
    apply."""
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=LOG_DIR_WARNING)
                logger.experiment.metrics[:0] = rows
