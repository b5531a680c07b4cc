"""The embedded benchmark: real texture photos from scikit-image with synthetic defects.

Written once, deterministically from a seed, in the MVTec AD on-disk layout, then read by the
same loader as MVTec AD.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from fod_lightning.data.defects import DEFECT_FAMILIES, contamination
from fod_lightning.data.mvtec import MVTecADDataModule
from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.errors import ConfigError

TEXTURE_CATEGORIES = ("brick", "grass", "gravel")  # the default benchmark's photos
# Every texture-like photo scikit-image ships (no download), at least 512 px on each side: ``data.photos`` chooses.
# moon: the lunar surface (grey); immunohistochemistry: stained tissue (colour); hubble_deep_field: a star field.
PHOTO_TEXTURES = (*TEXTURE_CATEGORIES, "moon", "immunohistochemistry", "hubble_deep_field")
FORMAT_VERSION = 1


def _photo(name: str) -> np.ndarray:
    """The scikit-image photo as RGB float in [0, 1]."""
    img = getattr(skimage.data, name)().astype(np.float64) / 255.0
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    y = rng.integers(0, photo.shape[0] - size + 1)
    x = rng.integers(0, photo.shape[1] - size + 1)
    crop = photo[y : y + size, x : x + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(array * 255), 0, 255).astype(np.uint8)).save(path)


def _write_category(root: Path, name: str, spec: dict, rng: np.random.Generator) -> None:
    photo = _photo(name)
    others = [_photo(o) for o in spec["categories"] if o != name]  # contamination pastes the benchmark's others
    size = spec["crop_size"]
    for i in range(spec["n_train"]):
        _save(root / name / "train" / "good" / f"{i:03d}.png", _crop(photo, size, rng))
    for i in range(spec["n_test_good"]):
        _save(root / name / "test" / "good" / f"{i:03d}.png", _crop(photo, size, rng))
    for family, make in DEFECT_FAMILIES.items():
        for i in range(spec["n_test_per_defect"]):
            image = _crop(photo, size, rng)
            if make is contamination:
                defective, mask = make(image, rng, _crop(others[i % len(others)], size, rng))
            else:
                defective, mask = make(image, rng)
            _save(root / name / "test" / family / f"{i:03d}.png", defective)
            _save(root / name / "ground_truth" / family / f"{i:03d}_mask.png", mask.astype(np.float64))


DEFAULT_SPEC = {"n_train": 40, "n_test_good": 12, "n_test_per_defect": 8, "crop_size": 256}


def spec_of(seed: int, n_train: int, n_test_good: int, n_test_per_defect: int, crop_size: int,
            photos: tuple[str, ...] = TEXTURE_CATEGORIES) -> dict:  # fmt: skip
    """Everything the benchmark's files depend on."""
    return {"version": FORMAT_VERSION, "seed": seed, "categories": list(photos), "n_train": n_train,
            "n_test_good": n_test_good, "n_test_per_defect": n_test_per_defect, "crop_size": crop_size}  # fmt: skip


def check_photos(photos) -> tuple[str, ...]:
    """``data.photos`` as a tuple of known, distinct photo names (at least two: contamination pastes another)."""
    names = (photos,) if isinstance(photos, str) else tuple(str(p) for p in photos)
    unknown = [n for n in names if n not in PHOTO_TEXTURES]
    if unknown:
        raise ConfigError(f"data.photos names {unknown}, not a texture photo of scikit-image: use some of "
                          f"{', '.join(PHOTO_TEXTURES)}")  # fmt: skip
    if len(set(names)) != len(names) or len(names) < 2:
        raise ConfigError(f"data.photos={list(names)} needs at least two distinct photos (the contamination "
                          "defect pastes a patch of another one)")  # fmt: skip
    return names


def textures_folder(root: Path, spec: dict) -> Path:
    """Where a benchmark of ``spec`` lives: ``root`` for the default sizes with seed 0, else a sibling keyed by a
    digest of the spec (``fod_textures-<digest>``), so that benchmarks of different sizes never share a folder."""
    default = spec_of(0, **DEFAULT_SPEC)
    if spec == default:
        return root
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return root.with_name(f"{root.name}-{digest}")


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_textures(
    root: Path,
    seed: int = 0,
    n_train: int = 40,
    n_test_good: int = 12,
    n_test_per_defect: int = 8,
    crop_size: int = 256,
    photos: tuple[str, ...] = TEXTURE_CATEGORIES,
) -> Path:
    """The folder of the benchmark these settings make (:func:`textures_folder`), built there unless it is.

    The build goes to a temporary folder renamed into place, so concurrent processes (DDP ranks, parallel sweep
    jobs) never see half-written data, and a folder is never rebuilt in place: another size lives elsewhere.
    """
    spec = spec_of(seed, n_train, n_test_good, n_test_per_defect, crop_size, check_photos(photos))
    folder = textures_folder(Path(root), spec)
    if read_manifest(folder) == spec:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for index, name in enumerate(spec["categories"]):
            _write_category(tmp, name, spec, np.random.default_rng([seed, index]))
        (tmp / "manifest.json").write_text(json.dumps(spec, indent=1))
        if folder.exists() and read_manifest(folder) != spec:  # a build of an older version: set aside, then gone
            stale = folder.with_name(f".{folder.name}-stale-{os.getpid()}")
            folder.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:  # another process renamed its build into place first
            if read_manifest(folder) != spec:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class TexturesDataModule(MVTecADDataModule):
    """Embedded benchmark (brick, grass, gravel by default; scratch, stain, contamination defects).

    Args:
        seed: generation seed; another seed gives another benchmark.
        n_train, n_test_good, n_test_per_defect, crop_size: size of the generated benchmark.
        photos: the scikit-image photos it is made of, one category each (some of :data:`PHOTO_TEXTURES`).
        Other arguments as :class:`AnomalyDataModule`.
    """

    benchmark = "embedded textures"
    categories = PHOTO_TEXTURES  # every name a category can have; an instance serves its ``photos``

    def __init__(
        self, root: str, category: str, seed: int = 0, n_train: int = 40, n_test_good: int = 12,
        n_test_per_defect: int = 8, crop_size: int = 256, photos=TEXTURE_CATEGORIES, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(root, category, **kwargs)
        self.categories = check_photos(photos)
        self.given_root = self.root  # the benchmark's folder is this, or a sibling keyed by the sizes below
        self.spec = dict(
            seed=seed, n_train=n_train, n_test_good=n_test_good, n_test_per_defect=n_test_per_defect,
            crop_size=crop_size, photos=self.categories,
        )  # fmt: skip

    @classmethod
    def check_root(cls, root: str | Path) -> None:
        """The root need not exist before the run: :meth:`prepare_data` writes it."""

    def prepare_data(self) -> None:
        """Build the benchmark if needed; ``root`` becomes its folder (keyed by its sizes, see
        :func:`textures_folder`)."""
        self.root = ensure_textures(self.given_root, **self.spec)

    def setup(self, stage: str | None = None) -> None:
        if self.category not in self.categories:
            raise DatasetLayoutError(
                f"data.category={self.category} is not among data.photos={list(self.categories)}: add it to "
                "data.photos or choose one of them"
            )
        self.prepare_data()
        super().setup(stage)
