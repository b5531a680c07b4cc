"""The folder a command writes into, checked before anything is written there.

Hydra creates the run folder (``hydra.run.dir``; ``output_dir`` of ``predict``) and writes into it before the
task starts, so the check is a Hydra callback: a folder that is a file, that cannot be created, or that already
holds an earlier result stops the command with one line. An earlier result is never replaced unless asked
(``overwrite=true``); ``ckpt_path=last`` resumes the run in its own folder. A multirun checks its sweep folder's
job folders before the first job starts.
"""

import json
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fod_lightning.errors import ConfigError, FODUserError


class OutputFolderError(FODUserError, OSError):
    """The output folder cannot be used: it is a file, cannot be created, or holds an earlier result."""


def earlier_result(folder: Path, marker: str) -> str | None:
    """What ``folder`` holds of an earlier command (its ``marker`` file and, for a run, its status), or None. A run
    that stopped before its first category (a config error) left nothing to lose: no results, no checkpoint."""
    path = folder / marker
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return str(path)
    if not isinstance(record, dict) or not isinstance(record.get("run"), dict):
        return str(path)
    if not record.get("categories") and not any(folder.glob("*/checkpoints/*.ckpt")):
        return None
    return f"{path} (status {record['run'].get('status')})"


def check_output_folder(folder: Path, marker: str | None, fix: str = "") -> None:
    """Refuse ``folder`` if it is a file or holds ``marker`` (None: may hold one; ``fix`` says what to do then);
    create it otherwise, so that a folder that cannot be made is reported here, with its reason, rather than in
    Hydra's traceback."""
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"output folder {folder} is a file: choose another folder")
    found = earlier_result(folder, marker) if marker else None
    if found:
        raise OutputFolderError(f"{folder} already holds an earlier result, {found}: {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(
            f"output folder {folder} cannot be created ({err.strerror}): choose another folder"
        ) from err


def is_extra_ddp_rank() -> bool:
    """A DDP rank that Lightning started by re-running the command into rank 0's folder (``LOCAL_RANK`` > 0)."""
    return os.environ.get("LOCAL_RANK", "0") not in ("", "0")


class OutputFolderCallback(Callback):
    """Hydra callback: the output folder check, before Hydra writes anything.

    Args:
        marker: the file an earlier result leaves in the folder (``results.json`` of a run, ``scores.csv`` of
            ``predict``).
        folder_key: the setting users give the folder with, named in the message.
        resume: what else lets a folder with a result be used again (``ckpt_path=last``), named in the message.
        usage: the command line shown when mandatory settings (``???``) are missing.
    """

    def __init__(
        self, marker: str, folder_key: str = "hydra.run.dir", resume: str | None = None, usage: str | None = None
    ) -> None:
        self.marker, self.folder_key, self.resume, self.usage = marker, folder_key, resume, usage

    def fix(self) -> str:
        resume = f", resume it with {self.resume}" if self.resume else ""
        return f"choose another {self.folder_key}{resume}, or overwrite=true to replace it"

    def allowed(self, config: DictConfig) -> bool:
        """An earlier result may be written over: asked for, or resuming."""
        resuming = self.resume is not None and config.get("ckpt_path") == "last"
        return bool(config.get("overwrite", False)) or resuming

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not is_extra_ddp_rank():  # extra ranks write into rank 0's folder
            stop_on_error(self.check_run, config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        stop_on_error(self.check_sweep, config)

    def check_run(self, config: DictConfig) -> None:
        missing = missing_settings(config)
        if missing:  # the folder may be one of them: say what to give, as the command itself would
            raise ConfigError(f"{' and '.join(missing)} must be given" + (f": {self.usage}" if self.usage else ""))
        marker = None if self.allowed(config) else self.marker
        HydraConfig.instance().set_config(config)  # the default run folder goes through ${hydra:runtime.cwd}
        check_output_folder(Path(str(config.hydra.run.dir)), marker, self.fix())

    def check_sweep(self, config: DictConfig) -> None:
        if self.allowed(config):
            return
        HydraConfig.instance().set_config(config)  # the default sweep folder goes through ${hydra:runtime.cwd}
        jobs = sorted(p.parent for p in Path(str(config.hydra.sweep.dir)).glob(f"*/{self.marker}"))
        if jobs:
            check_output_folder(jobs[0], self.marker, self.fix().replace(self.folder_key, "hydra.sweep.dir"))


def missing_settings(config: DictConfig) -> list[str]:
    """The command's top-level mandatory settings (``???``) not given. Nothing else is resolved: interpolations
    through ``${hydra:...}`` cannot be before the job starts."""
    return [k for k in config if k != "hydra" and OmegaConf.is_missing(config, k)]


def stop_on_error(check, config: DictConfig) -> None:
    """Hydra turns a callback's exception into a warning and goes on: print the one line and exit 2 instead."""
    try:
        check(config)
    except FODUserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
