"""W&B logger that falls back to offline mode when no server can be reached, and keeps a run's files together."""

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

from fod_lightning.run_info import job_info

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


def wandb_logger(mode: str = "auto", tags: list[str] | None = None, swept_tags: bool = True, **kwargs) -> WandbLogger:
    """Lightning's WandbLogger with ``mode`` resolved (``auto``, ``online``, ``offline``, ``disabled``).

    Args:
        swept_tags: add a ``key=value`` tag for each parameter the job's sweep varies.
        Other arguments: :class:`lightning.pytorch.loggers.WandbLogger` (and ``wandb.init``).
    """
    tags = [str(t) for t in tags or []]
    if swept_tags:
        tags += [f"{key}={value}" for key, value in job_info().swept.items()]
    tags = list(dict.fromkeys(t[:MAX_TAG_LENGTH] for t in tags))
    return WandbLogger(mode=resolve_mode(mode), tags=tags, **kwargs)


@contextmanager
def staging_inside(run) -> Iterator[None]:
    """Log tables with their pixels inside the run's own folder.

    W&B stores a logged table's images in an artifact whose files it first copies to a staging folder, by
    default in the user's home (``WANDB_DATA_DIR``); an offline run copied elsewhere would lose them. The
    staging folder is put inside the run's folder while the table is logged.
    """
    previous = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str(Path(run.dir).parent / "data")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("WANDB_DATA_DIR", None)
        else:
            os.environ["WANDB_DATA_DIR"] = previous
