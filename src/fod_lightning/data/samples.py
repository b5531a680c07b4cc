"""Sample tables: what a benchmark folder holds, checked before any training starts."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fod_lightning.errors import UserError


class DatasetLayoutError(UserError, ValueError):
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
    mask_root: Path | None = None,
    normal_masks: bool = False,
) -> list[Sample]:
    """Samples of ``<category_root>/<split>/<type>[/<image_subdir>]/<image>``, sorted by (type, file name).

    When the anomalous types are read, every mask must belong to an image (see :func:`check_masks_used`): a mask
    of no image usually means a test image went missing.

    Args:
        normal: name of the normal type folder (``good``, ``ok``).
        extensions: image file extensions to list (lower case, with dot); masks are listed with the same.
        mask_of: (defect type, image path) -> expected mask path of an anomalous image (or, with
            ``normal_masks``, of any image).
        image_subdir: folder inside each type folder that holds the images (MVTec 3D-AD: ``rgb``).
        normal_only: read only the normal type folder; default: for ``train`` only.
        mask_root: folder of one mask folder per type (``ground_truth``), whose folders must be those of test types;
            None where the masks sit inside the type folders.
        normal_masks: the normal images have masks too (MVTec 3D-AD ships all-zero ones): not read, but checked
            like the others; otherwise a mask in the normal type's mask folder is an error.
    """
    normal_only = split == "train" if normal_only is None else normal_only
    split_dir = require_dir(category_root / split, f"{split} folder", f"expected layout: {layout_help}")
    if normal_only:
        require_dir(split_dir / normal, f"{split}/{normal} folder", f"it holds the normal images. {layout_help}")
    samples, used, mask_folders = [], set(), {}
    for type_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p)):
        defect = type_dir.name
        if normal_only and defect != normal:
            continue
        folder = type_dir
        if image_subdir:
            folder = require_dir(type_dir / image_subdir, f"{image_subdir} folder", f"expected layout: {layout_help}")
        mask_folders[defect] = (mask_of(defect, folder / "image.png").parent, folder)  # where this type's masks lie
        for image in list_images(folder, extensions):
            mask = mask_of(defect, image)
            if defect == normal:
                samples.append(Sample(image, 0, None, defect))
            else:
                samples.append(Sample(image, 1, require_mask(image, mask), defect))
            if defect != normal or normal_masks:
                used.add(mask)
    if not normal_only:
        for defect, (masks, images) in mask_folders.items():
            of_normal = defect == normal and not normal_masks
            check_masks_used(masks, used, extensions, images, normal_mask_error(normal, split_dir) if of_normal else "")
        check_mask_root(mask_root, set(mask_folders), extensions, split_dir)
    return samples


def normal_mask_error(normal: str, split_dir: Path) -> str:
    return (f"is in the mask folder of the normal images ({normal}), which have no masks: if its image is anomalous, "
            f"move the image to {split_dir}/<defect type>/ and the mask to that type's mask folder; else remove the "
            "mask")  # fmt: skip


def check_masks_used(masks: Path, used: set[Path], extensions: tuple[str, ...], images: Path, error: str = "") -> None:
    """Every mask file in the folder ``masks`` (listed as images are: hidden and other files skipped) must be in
    ``used``, the masks of the images of ``images``; ``error``: what the message says of a mask instead of the
    default (it belongs to no image)."""
    if not masks.is_dir():
        return
    for mask in list_images(masks, extensions):
        if mask in used or same_file_in(mask, used):
            continue
        if error:
            raise DatasetLayoutError(f"mask {mask} {error}")
        twin = next((m for m in sorted(used) if m.parent == mask.parent and m.stem == mask.stem), None)
        if twin is not None:
            raise DatasetLayoutError(f"mask {mask} is a second mask of the image whose mask is {twin}: remove one")
        raise DatasetLayoutError(
            f"mask {mask} belongs to no image in {images}: restore the image it marks (a missing image changes the "
            "metrics), or remove the mask"
        )


def same_file_in(path: Path, paths: set[Path]) -> bool:
    """``path`` is one of ``paths`` under another spelling: on a case-insensitive file system (macOS, Windows) the
    listing says ``x_mask.PNG`` where the layout names ``x_mask.png``."""
    folded = path.name.casefold()
    return any(p.parent == path.parent and p.name.casefold() == folded and p.exists() and p.samefile(path)
               for p in paths)  # fmt: skip


def check_mask_root(mask_root: Path | None, types: set[str], extensions: tuple[str, ...], split_dir: Path) -> None:
    """Each mask folder of ``mask_root`` that holds masks must be that of a type folder of ``split_dir``."""
    if mask_root is None or not mask_root.is_dir():
        return
    for folder in sorted(p for p in mask_root.iterdir() if p.is_dir() and not is_hidden(p)):
        if folder.name not in types and list_images(folder, extensions):
            raise DatasetLayoutError(
                f"mask folder {folder} belongs to no test images ({split_dir / folder.name} does not exist): "
                "restore the test images or remove the mask folder"
            )
