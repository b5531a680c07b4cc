"""The folder a command writes into, checked before anything is written there.

Hydra creates the run folder (``hydra.run.dir``; ``output_dir`` of ``predict``) and writes into it before the
task starts, so the check is a Hydra callback: a folder that is a file, that cannot be created, or that already
holds an earlier result stops the command with one line. An earlier result is never replaced unless asked
(``overwrite=true``); ``ckpt_path=last`` resumes the run in its own folder. A multirun checks its sweep folder's
job folders before the first job starts.
"""

import importlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fod_lightning.errors import UserError
from fod_lightning.launch.optuna_study import continued_study
from fod_lightning.utils.checks import check_given
from fod_lightning.utils.entry import run_command

RANK_VARIABLES = ("LOCAL_RANK", "RANK", "SLURM_PROCID")  # Lightning's re-run ranks, torchrun, srun tasks


class OutputFolderError(UserError, OSError):
    """The output folder cannot be used: it is a file, cannot be created, or holds an earlier result."""


def earlier_result(folder: Path, marker: str) -> str | None:
    """What ``folder`` holds of an earlier command (its ``marker`` file and, for a run's ``results.json``, its
    status), or None. A run that stopped before its first category (a config error) left nothing to lose: no
    results, no checkpoint."""
    path = folder / marker
    if not path.exists():
        return None
    if path.suffix != ".json":
        return str(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return str(path)
    if not isinstance(record, dict) or not isinstance(record.get("run"), dict):
        return str(path)
    if not record.get("categories") and not any(folder.glob("*/checkpoints/*.ckpt")):
        return None
    return f"{path} (status {record['run'].get('status')})"


def check_output_folder(folder: Path, marker: str | None, fix: str = "", key: str | None = None) -> None:
    """Refuse ``folder`` (given as setting ``key``) if it is a file or holds ``marker`` (None: may hold one;
    ``fix`` says what to do then); create it otherwise, so that a folder that cannot be made is reported here,
    with its reason, rather than in Hydra's traceback."""
    named, other = (f"{key}={folder}", f"another {key}") if key else (f"output folder {folder}", "another folder")
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{named} is a file, not a folder: choose {other}")
    found = earlier_result(folder, marker) if marker else None
    if found:
        raise OutputFolderError(f"{folder} already holds an earlier result, {found}: {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(f"{named} cannot be created ({err.strerror}): choose {other}") from err


def is_extra_rank() -> bool:
    """A process of a multi-process run other than its first, writing into the first one's folder."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


class OutputFolderCallback(Callback):
    """Hydra callback: the output folder check, before Hydra writes anything.

    Args:
        marker: the file an earlier result leaves in the folder (``results.json`` of a run, ``scores.csv`` of
            ``predict``).
        folder_key: the setting users give the folder with, named in the message.
        resume: what else lets a folder with a result be used again (``ckpt_path=last``), named in the message.
        command: the module whose ``USAGE`` is shown when mandatory settings (``???``) are missing.
    """

    def __init__(
        self, marker: str, folder_key: str = "hydra.run.dir", resume: str | None = None, command: str | None = None
    ) -> None:
        self.marker, self.folder_key, self.resume, self.command = marker, folder_key, resume, command

    def fix(self, key: str) -> str:
        resume = f", resume it with {self.resume}" if self.resume else ""
        return f"choose another {key}{resume}, or overwrite=true to replace it"

    def allowed(self, config: DictConfig) -> bool:
        """An earlier result may be written over: asked for, or resuming."""
        resuming = self.resume is not None and config.get("ckpt_path") == "last"
        return bool(config.get("overwrite", False)) or resuming

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not is_extra_rank():
            stop_on_error(self.check_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        stop_on_error(self.check_sweep, config)

    def check_run(self, config: DictConfig) -> None:
        if self.command:  # the folder may be one of them: say what to give, as the command itself would
            check_given(config, importlib.import_module(self.command).USAGE)
        marker = None if self.allowed(config) else self.marker
        folder = resolved_folder(config, "run")
        check_output_folder(folder, marker, self.fix(self.folder_key), self.folder_key)

    def check_sweep(self, config: DictConfig) -> None:
        sweep = resolved_folder(config, "sweep")
        check_output_folder(sweep, None, key="hydra.sweep.dir")
        sweeper = {key: resolved(config, f"hydra.sweeper.{key}") for key in ("_target_", "storage", "study_name")}
        if self.allowed(config) or continued_study(sweeper):
            return  # a continued Optuna study numbers its new jobs after the stored ones
        for job in sorted(p.parent for p in sweep.glob(f"*/{self.marker}")):
            check_output_folder(job, self.marker, self.fix("hydra.sweep.dir"), "hydra.sweep.dir")


def resolved_folder(config: DictConfig, mode: str) -> Path:
    """``hydra.run.dir`` or ``hydra.sweep.dir``."""
    return Path(str(resolved(config, f"hydra.{mode}.dir")))


def resolved(config: DictConfig, key: str) -> Any:
    """A value of the config, resolved: Hydra's defaults go through ``${hydra:runtime.cwd}``, which needs Hydra's
    config set; it is set for that only and put back, so that Hydra starts the job as it would have."""
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(config)
    try:
        return OmegaConf.select(config, key)
    finally:
        hydra_config.cfg = before


def stop_on_error(check: Callable[[DictConfig], None], config: DictConfig) -> None:
    """Hydra turns a callback's exception into a warning and goes on, unchecked: a user error is printed as one
    line and a bug with its traceback instead, and the command stops (exit code 2 or 1)."""
    run_command(
        lambda: check(config),
        bug_message="the output folder could not be checked (a bug in fod_lightning: the traceback is above)",
    )


HYDRA_FILES = (".hydra", "run.log", "results.json")  # what Hydra and a job that never started leave in a run folder


def remove_unused_run_folder(folder: Path) -> None:
    """Remove what a run that produced nothing left in ``folder`` (Hydra's ``.hydra/`` and log, a ``results.json``
    without results), and the folder when that empties it; anything else in it is kept."""
    results = folder / "results.json"
    if results.is_file() and earlier_result(folder, "results.json") is not None:
        return  # it holds results: keep everything
    for name in HYDRA_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file():
            path.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
