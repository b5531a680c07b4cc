"""Sample tables: what a benchmark folder holds, checked before any training starts."""

from dataclasses import dataclass
from pathlib import Path

from fod_lightning.errors import FODUserError


class DatasetLayoutError(FODUserError, ValueError):
    """A dataset folder is not in the layout its loader expects; the message names path and fix."""


@dataclass(frozen=True)
class Sample:
    image_path: Path
    label: int  # 0 normal, 1 anomalous
    mask_path: Path | None  # None for normal images (all-zero mask)
    defect_type: str


def list_images(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files in ``folder`` with one of ``extensions`` (lower-case, with dot), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{what} {path} does not exist: {fix}")
    return path


def require_mask(image: Path, mask: Path) -> Path:
    if not mask.is_file():
        raise DatasetLayoutError(f"anomalous image {image} has no mask at {mask}: add the mask or remove the image")
    return mask
