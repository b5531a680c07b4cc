"""Pooled backbone features of the training images, computed once per category instead of every epoch.

Without augmentation a training image's frozen-backbone maps never change, so they are computed in one
pass (which also yields the reference features) and training reads them. ``memory`` keeps them for the
run; ``disk`` also stores them under a key of everything they depend on (each image file's path, size
and modification time, the image size and resize rule, the backbone, its strides and its weights), so
later runs and other jobs reuse them. Files are written to a temporary name and renamed, so jobs that
share the folder never read a half-written file; they are read with ``weights_only`` (no code runs).
"""

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from fod_lightning.errors import ConfigError
from fod_lightning.utils.atomic import atomic_path

log = logging.getLogger(__name__)
CACHE_MODES = ("off", "memory", "disk")
FORMAT_VERSION = 1


def file_identity(path: Path) -> list:
    """What changes when an image file is replaced: resolved path, size and modification time."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def cache_key(images: Sequence[Path], settings: dict) -> str:
    """Hex digest of the image files' identities and the settings the features depend on."""
    payload = {"version": FORMAT_VERSION, "settings": settings, "images": [file_identity(p) for p in images]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def compute_maps(
    batches: Iterable[torch.Tensor], pooled_features: Callable[[torch.Tensor], list[torch.Tensor]]
) -> list[torch.Tensor]:
    """Per stage, the pooled maps of every image in order, (N, C, h, w) float32 on the CPU."""
    with torch.no_grad():
        batch_maps = [[m.float().cpu() for m in pooled_features(images)] for images in batches]
    if not batch_maps:
        raise ValueError("cannot compute features: the training split has no images")
    return [torch.cat(stage) for stage in zip(*batch_maps)]


class FeatureCache:
    """Training features held in memory, optionally also on disk under ``directory``.

    Args:
        mode: ``off`` (the backbone runs on every training step), ``memory`` or ``disk``.
        directory: where ``disk`` stores its files.
    """

    def __init__(self, mode: str = "memory", directory: str | None = None) -> None:
        if mode not in CACHE_MODES:
            raise ConfigError(f"model.feature_cache={mode!r} is unknown; use one of {CACHE_MODES}")
        if mode == "disk" and not directory:
            raise ConfigError("model.feature_cache=disk needs model.feature_cache_dir (a folder for the files)")
        self.mode = mode
        self.directory = Path(directory).expanduser() if directory else None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def features(
        self, images: Sequence[Path], settings: dict, compute: Callable[[], list[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """The per-stage maps (N, C, h, w) of ``images``: read from disk when cached, else computed."""
        if self.mode != "disk":
            return compute()
        path = self.directory / f"{cache_key(images, settings)}.pt"
        if path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                maps = [stored[f"stage{i}"] for i in range(stored["n_stages"])]
                if all(m.shape[0] == len(images) for m in maps):
                    log.info("training features read from %s", path)
                    return maps
            except Exception as err:  # a damaged file is recomputed and replaced, never trusted
                log.warning("ignoring unreadable feature cache %s (%s): recomputing", path, err)
        maps = compute()
        self._write(path, maps)
        return maps

    @staticmethod
    def _write(path: Path, maps: list[torch.Tensor]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"n_stages": len(maps), **{f"stage{i}": m for i, m in enumerate(maps)}}, tmp)
        log.info("training features written to %s", path)
