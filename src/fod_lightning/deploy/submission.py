"""MVTec AD 2 evaluation-server submissions: write the maps, check the folder as the server would, pack it.

Layout (notes/mvtec_ad2.md section 2): ``<folder>/anomaly_images/<object>/<split>/<stem>.tiff`` (float16, one
channel, the dataset image's H x W; AU-PRO is computed from these) and
``<folder>/anomaly_images_thresholded/<object>/<split>/<stem>.png`` (uint8 0/255, one channel; SegF1 and ClassF1
come from these, so the threshold is baked into them). The server takes the splits ``test_private`` and
``test_private_mixed`` of all eight objects (:data:`AD2_OBJECTS`) in one ``<folder name>.tar.gz``.

Use: :func:`prepare_submission`, :func:`write_submission_image` for every image, then :func:`pack_submission`
(it runs :func:`check_submission` first).
"""

import tarfile
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from fod_lightning.data.transforms import read_image
from fod_lightning.errors import UserError, one_line
from fod_lightning.utils.atomic import atomic_path

AD2_OBJECTS = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
SUBMISSION_SPLITS = ("test_private", "test_private_mixed")
MAPS, BINARY = "anomaly_images", "anomaly_images_thresholded"
_EXTENSION = {MAPS: ".tiff", BINARY: ".png"}
_LISTED = 5  # file names named in one problem line


def prepare_submission(folder: str | Path) -> Path:
    """``folder`` created empty; a folder that already holds anything is refused (never overwritten)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"submission folder {folder} is not empty: choose a new folder, or remove it first")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_submission_image(
    folder: str | Path, obj: str, split: str, stem: str, anomaly_map: np.ndarray | torch.Tensor, threshold: float
) -> tuple[Path, Path]:
    """Write one image's float16 TIFF map and its 0/255 PNG (255 where ``anomaly_map >= threshold``), atomically.

    ``anomaly_map`` is the (H, W) map at the dataset image's original resolution; the PNG is thresholded on it as
    given (e.g. float32), as :class:`~fod_lightning.metrics.seg_f1.SegF1` would, not on the float16 copy.
    ``stem`` is the image's file name without ``.png`` (e.g. ``000_regular``). Returns (TIFF path, PNG path).
    An existing file is refused: each image is written once.
    """
    name = f"{obj}/{split}/{stem}"
    if Path(stem).suffix in (".png", ".tiff"):
        raise UserError(f"submission image {name}: pass the stem without its extension ({Path(stem).stem})")
    if isinstance(anomaly_map, torch.Tensor):
        anomaly_map = anomaly_map.detach().cpu().numpy()
    anomaly_map = np.asarray(anomaly_map)
    if anomaly_map.ndim != 2:
        raise UserError(f"anomaly map of {name} has shape {anomaly_map.shape}: pass one (H, W) map per image")
    if not np.isfinite(anomaly_map).all():
        raise UserError(f"anomaly map of {name} holds NaN or inf: the server needs finite scores")
    with np.errstate(over="ignore"):  # reported below as one line
        half = anomaly_map.astype(np.float16)
    if not np.isfinite(half).all():  # float16 overflows beyond 65504
        raise UserError(
            f"anomaly map of {name} reaches {np.abs(anomaly_map).max():.4g}, beyond float16's 65504: "
            "scale the maps (e.g. to [0, 1]) before writing"
        )
    binary = np.where(anomaly_map >= threshold, 255, 0).astype(np.uint8)
    tiff = Path(folder) / MAPS / obj / split / f"{stem}.tiff"
    png = Path(folder) / BINARY / obj / split / f"{stem}.png"
    for path in (tiff, png):
        if path.exists():
            raise UserError(f"{path} exists: write each image once, into a new folder (prepare_submission)")
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(tiff) as tmp:
        tifffile.imwrite(tmp, half)  # uncompressed, one page, SampleFormat IEEE float, 16 bits
    with atomic_path(png) as tmp:
        Image.fromarray(binary).save(tmp, format="PNG")  # 2-D uint8: mode L, one channel
    return tiff, png


def dataset_images(dataset_root: str | Path, obj: str, split: str) -> dict[str, Path]:
    """Stem -> path of the split's images (``test_public`` stems keep their ``good/`` or ``bad/`` folder)."""
    split_dir = Path(dataset_root) / obj / split
    images = {
        p.relative_to(split_dir).with_suffix("").as_posix(): p
        for p in sorted(split_dir.rglob("*.png"))
        if "ground_truth" not in p.relative_to(split_dir).parts
    }
    if not images:
        raise UserError(
            f"no images in {split_dir}: point dataset_root at the MVTec AD 2 folder holding {obj}/{split}/*.png"
        )
    return images


def check_submission(
    folder: str | Path,
    dataset_root: str | Path,
    objects: tuple[str, ...] | list[str],
    splits: tuple[str, ...] = SUBMISSION_SPLITS,
    raise_error: bool = True,
) -> list[str]:
    """Problems the server would refuse (or score as 0), one line each, paths relative to ``folder``.

    Checks the exact structure (both top folders, exactly ``objects`` and ``splits``), exactly one file per
    dataset image with its stem, TIFFs float16, one channel and finite, PNGs one channel and only 0/255, and each
    file's H x W equal to its dataset image's (read from the image's header). The server takes all eight
    :data:`AD2_OBJECTS`; a subset is checked as given. With ``raise_error`` (default) problems raise one
    :class:`UserError` line naming the first; otherwise the list is returned ([] when the folder is fine).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"submission folder {folder} not found: write it with write_submission_image first")
    images = {(obj, split): dataset_images(dataset_root, obj, split) for obj in objects for split in splits}
    problems = _entries(folder, folder, set(_EXTENSION))
    for top, ext in _EXTENSION.items():
        if not (folder / top).is_dir():
            continue
        problems += _entries(folder, folder / top, set(objects))
        for obj in objects:
            if not (folder / top / obj).is_dir():
                continue
            problems += _entries(folder, folder / top / obj, set(splits))
            for split in splits:
                split_dir = folder / top / obj / split
                if split_dir.is_dir():
                    problems += _check_split(folder, split_dir, ext, images[obj, split])
    if problems and raise_error:
        more = f" (and {len(problems) - 1} more: check_submission(..., raise_error=False) lists them)"
        raise UserError(f"submission {folder} would be refused: {problems[0]}{more if len(problems) > 1 else ''}")
    return problems


def pack_submission(
    folder: str | Path,
    dataset_root: str | Path,
    objects: tuple[str, ...] | list[str],
    splits: tuple[str, ...] = SUBMISSION_SPLITS,
) -> Path:
    """``<folder>.tar.gz`` beside ``folder`` (members ``<folder name>/anomaly_images/...``), the archive the server
    takes, written atomically after :func:`check_submission` passed. An existing archive is refused."""
    folder = Path(folder).resolve()
    check_submission(folder, dataset_root, objects, splits)
    archive = folder.with_name(f"{folder.name}.tar.gz")
    if archive.exists():
        raise UserError(f"{archive} exists: move or remove it before packing {folder} again")
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        tar.add(folder, arcname=folder.name, filter=_anonymous)
    return archive


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Members without the local user's ids and names."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def _entries(folder: Path, directory: Path, expected: set[str]) -> list[str]:
    """Missing or extra entries of a structure level (the server compares the sets exactly)."""
    present = {p.name for p in directory.iterdir()}
    rel = directory.relative_to(folder).as_posix()
    where = "the submission folder" if rel == "." else rel
    problems = []
    if missing := sorted(expected - present):
        problems.append(f"{where}: missing folder(s) {_names(missing)}: write a map for every image of them")
    if extra := sorted(present - expected):
        problems.append(
            f"{where}: unexpected {_names(extra)}: remove them (the server takes exactly {sorted(expected)})"
        )
    return problems


def _check_split(folder: Path, split_dir: Path, ext: str, images: dict[str, Path]) -> list[str]:
    """One split folder of one top folder against the split's dataset images."""
    rel = split_dir.relative_to(folder).as_posix()
    expected = {f"{stem}{ext}": path for stem, path in images.items()}
    present = {p.relative_to(split_dir).as_posix() for p in split_dir.rglob("*") if p.is_file()}
    problems = []
    if missing := sorted(set(expected) - present):
        problems.append(f"{rel}: {len(missing)} file(s) missing: {_names(missing)} (one per dataset image)")
    if extra := sorted(present - set(expected)):
        problems.append(f"{rel}: {len(extra)} unexpected file(s): {_names(extra)}: remove them")
    for name in sorted(present & set(expected)):
        problems += _check_file(split_dir / name, f"{rel}/{name}", expected[name])
    return problems


def _check_file(path: Path, rel: str, image: Path) -> list[str]:
    """A map's readability, channels, dtype or values, and size against its dataset image."""
    try:
        if path.suffix == ".tiff":
            array = tifffile.imread(path)
        else:
            with Image.open(path) as png:
                array = np.asarray(png)
    except Exception as err:  # any reader error: the server could not read it either
        return [f"{rel}: unreadable ({one_line(err)}): write it again with write_submission_image"]
    if array.ndim != 2:
        return [f"{rel}: shape {array.shape}, the server needs one channel (H, W)"]
    problems = []
    if path.suffix == ".tiff":
        if array.dtype != np.float16:
            problems.append(f"{rel}: {array.dtype}, the server needs float16 (write_submission_image converts)")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            problems.append(f"{rel}: {int((~np.isfinite(array)).sum())} NaN or inf value(s): write finite scores")
    elif others := sorted(set(np.unique(array).tolist()) - {0, 255}):
        problems.append(f"{rel}: values {_names([str(v) for v in others])} besides 0 and 255: write 0 or 255 only")
    with Image.open(image) as im:  # only the header is read
        width, height = im.size
    if array.shape != (height, width):
        problems.append(
            f"{rel}: {array.shape[0]}x{array.shape[1]} (H x W) but {image} is {height}x{width}: "
            "write the map at the image's original size"
        )
    return problems


@torch.no_grad()
def write_category_submission(model, datamodule, folder: Path, splits: tuple[str, ...] = ("private", "private_mixed"),
                              batch_size: int = 8) -> int:  # fmt: skip
    """Every image of the category's private ``splits`` (its datamodule's ``private_samples``) scored by ``model`` and
    written as the server's files at the image's own size (:func:`write_submission_image`), thresholded at the model's
    calibrated pixel threshold. Returns the number of images written."""
    threshold = model.thresholds.pixel
    if threshold is None:
        raise UserError("submission=true needs the model's calibrated pixel threshold: model.calibration.source=normal")
    net, contract, device = model.net.eval(), model.contract, model.device
    written = 0
    for split in splits:
        samples = datamodule.private_samples(split)
        split_dir = f"test_{split}"
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            images = [read_image(s.image_path) for s in chunk]
            batch = torch.stack([contract.preprocess(image) for image in images]).to(device)
            maps = net.score_images(batch)[1].float().cpu().numpy()
            for sample, image, amap in zip(chunk, images, maps):
                full = contract.map_to_image(amap, *image.shape[:2])
                write_submission_image(folder, datamodule.category, split_dir, sample.image_path.stem,
                                       np.nan_to_num(full, nan=float(np.nanmin(full))), threshold)  # fmt: skip
                written += 1
    return written
