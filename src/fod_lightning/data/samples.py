"""Sample tables: what a benchmark folder holds, checked before any training starts."""

from collections.abc import Callable
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


def is_hidden(path: Path) -> bool:
    """``.DS_Store``, macOS's ``._x.png`` copies of resource forks, ``.ipynb_checkpoints``...: never data."""
    return path.name.startswith(".")


def list_images(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files in ``folder`` with one of ``extensions`` (any case; given lower-case, with dot), sorted by name.

    Other files (``Thumbs.db``, ``notes.txt``) and hidden ones are skipped; links are followed, and a link to
    nothing (a missing target, or a loop) stops with its name.
    """
    images = []
    for path in sorted(folder.iterdir()):
        if is_hidden(path) or path.suffix.lower() not in extensions:
            continue
        if path.is_file():
            images.append(path)
        elif path.is_symlink():  # is_file() follows links: false for a dangling link or a loop
            raise DatasetLayoutError(
                f"image {path} is a symbolic link to nothing (its target is missing, or the link loops): "
                "fix or remove the link"
            )
    return images


def require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise DatasetLayoutError(f"{what} {path} does not exist: {fix}")
    return path


def require_mask(image: Path, mask: Path) -> Path:
    if not mask.is_file():
        raise DatasetLayoutError(f"anomalous image {image} has no mask at {mask}: add the mask or remove the image")
    return mask


def parse_type_folders(
    category_root: Path,
    split: str,
    normal: str,
    extensions: tuple[str, ...],
    mask_of: Callable[[str, Path], Path],
    layout_help: str,
    image_subdir: str = "",
    normal_only: bool | None = None,
) -> list[Sample]:
    """Samples of ``<category_root>/<split>/<type>[/<image_subdir>]/<image>``, sorted by (type, file name).

    Args:
        normal: name of the normal type folder (``good``, ``ok``).
        extensions: image file extensions to list (lower case, with dot).
        mask_of: (defect type, image path) -> expected mask path of an anomalous image.
        image_subdir: folder inside each type folder that holds the images (MVTec 3D-AD: ``rgb``).
        normal_only: read only the normal type folder; default: for ``train`` only.
    """
    normal_only = split == "train" if normal_only is None else normal_only
    split_dir = require_dir(category_root / split, f"{split} folder", f"expected layout: {layout_help}")
    samples = []
    for type_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p)):
        defect = type_dir.name
        if normal_only and defect != normal:
            continue
        folder = type_dir
        if image_subdir:
            folder = require_dir(type_dir / image_subdir, f"{image_subdir} folder", f"expected layout: {layout_help}")
        for image in list_images(folder, extensions):
            if defect == normal:
                samples.append(Sample(image, 0, None, defect))
            else:
                samples.append(Sample(image, 1, require_mask(image, mask_of(defect, image)), defect))
    return samples
