"""W&B logger that falls back to offline mode when no server can be reached."""

import os
import socket
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger


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
    """``auto``: ``WANDB_MODE`` if set, else online when the server answers and offline otherwise."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if wandb_server_reachable() else "offline"


def wandb_logger(mode: str = "auto", **kwargs) -> WandbLogger:
    """Lightning's WandbLogger with ``mode`` resolved (``auto``, ``online``, ``offline``, ``disabled``)."""
    resolved = resolve_mode(mode)
    if resolved == "offline" and mode == "auto":
        print("W&B server unreachable: logging offline (sync later with `wandb sync <run dir>/wandb`)")
    return WandbLogger(mode=resolved, **kwargs)
