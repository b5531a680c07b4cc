"""W&B logger that falls back to offline mode when no server can be reached, and keeps a run's files together."""

import importlib.util
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from fod_lightning.errors import ConfigError
from fod_lightning.utils.hydra_job import job_info

MAX_TAG_LENGTH = 64  # W&B refuses longer tags


def wandb_server_reachable(base_url: str | None = None, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the W&B server (``WANDB_BASE_URL`` or api.wandb.ai) succeeds."""
    url = urlparse(base_url or os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(mode: str = "auto") -> str:
    """``auto``: ``WANDB_MODE`` if set, else online when the server answers and offline otherwise (said once,
    only then: a mode that was asked for is used silently)."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if wandb_server_reachable():
        return "online"
    print("W&B server unreachable: logging offline (sync later with `wandb sync <run dir>/wandb`)")
    return "offline"


def wandb_logger(mode: str = "auto", tags: list[str] | None = None, swept_tags: bool = True, **kwargs) -> "WandbLogger":
    """Lightning's WandbLogger with ``mode`` resolved (``auto``, ``online``, ``offline``, ``disabled``) and every
    file W&B writes kept under ``<save_dir>/wandb`` (:class:`WandbLogger`).

    Args:
        swept_tags: add a ``key=value`` tag for each parameter the job's sweep varies.
        Other arguments: :class:`lightning.pytorch.loggers.WandbLogger` (and ``wandb.init``).
    """
    require_wandb()
    tags = [str(t) for t in tags or []]
    if swept_tags:
        tags += [f"{key}={value}" for key, value in job_info().swept.items()]
    tags = list(dict.fromkeys(t[:MAX_TAG_LENGTH] for t in tags))
    return WandbLogger(mode=resolve_mode(mode), tags=tags, **kwargs)


def require_wandb() -> None:
    """W&B is an optional extra: without it, one line saying how to get it."""
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("logging to W&B needs the wandb package: pip install 'fod_lightning[wandb]' (or logger=csv)")


# W&B's own folders outside a run's folder, by default in the user's home: its service's logs and the artifact
# file cache (~/.cache/wandb), the artifact staging area (~/.local/share/wandb), downloaded artifacts (./artifacts).
WANDB_FOLDERS = {"WANDB_CACHE_DIR": "cache", "WANDB_DATA_DIR": "data", "WANDB_ARTIFACT_DIR": "artifacts"}


@contextmanager
def wandb_folders_inside(folder: str | Path) -> Iterator[None]:
    """W&B's cache, data (staging) and artifact folders under ``folder`` while the block runs; the environment
    variables that name them are then as they were (other runs of the process are not redirected)."""
    previous = {name: os.environ.get(name) for name in WANDB_FOLDERS}
    os.environ.update({name: str(Path(folder) / sub) for name, sub in WANDB_FOLDERS.items()})
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger whose run starts with W&B's own folders under ``<save_dir>/wandb`` (beside the runs).
    Same class name: code that recognises a W&B logger by its type's name (no wandb import) still does.

    The run's files go to ``<save_dir>/wandb`` anyway (``dir``); the cache, data and artifact folders are named by
    environment variables only, read by W&B's service when it starts (with the first run of the process: its logs
    and those of its system monitor then go to that run's ``<save_dir>/wandb/cache``, also for later runs of the
    process) and by the Python side when a table is logged (:func:`staging_inside`). They are set while the run
    starts, then restored, so nothing lands in the user's home and nothing else in the process is redirected.
    """

    @property
    def experiment(self):
        if self._experiment is not None:
            return super().experiment
        # Lightning always passes anonymous=None, which W&B warns about ("The anonymous setting has no effect") on
        # every run: not the user's concern (tests/integration/test_wandb_offline.py checks the warning stays away)
        if getattr(self, "_wandb_init", {}).get("anonymous", False) is None:
            self._wandb_init.pop("anonymous")
        with wandb_folders_inside(Path(self.save_dir or ".") / "wandb"):
            return super().experiment


@contextmanager
def staging_inside(run) -> Iterator[None]:
    """Log tables with their pixels inside the run's own folder.

    W&B stores a logged table's images in an artifact whose files it first copies to a staging folder, by
    default in the user's home (``WANDB_DATA_DIR``); an offline run copied elsewhere would lose them. The
    staging folder (and W&B's cache and artifact folders) are put inside the run's folder while the table is
    logged.
    """
    with wandb_folders_inside(Path(run.dir).parent):
        yield
