"""Custom data in plain folders: normal images, one folder per defect type, optional masks."""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import DatasetLayoutError, Sample, check_masks_used, list_images, require_dir
from fod_lightning.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = ("_mask", "_gt", "-mask", "_label", "_seg")  # how datasets often name a mask after its image
AUTO_SIDE, AUTO_MULTIPLE = 256, 32  # image_size=auto: the shorter side, and what both sides are multiples of
log = logging.getLogger(__name__)


class FolderDataModule(AnomalyDataModule):
    """A custom dataset of image folders, all paths relative to ``root`` (absolute paths also work).

    Train: the images of ``normal_dir``. Test: the images of ``normal_test_dir`` (label 0, type ``good``)
    or, when it is not given, a seeded, deterministic ``normal_test_split`` fraction of ``normal_dir``
    held out from training; plus the images of each of ``abnormal_dirs`` (label 1, type = folder name).

    Mask rule: the mask of ``<abnormal dir>/<stem>.<ext>`` is ``<root>/<mask_dir>/<type>/<stem><mask_suffix>.<e>``
    where ``<type>`` is the abnormal folder's name and ``<e>`` is any of ``IMAGE_EXTENSIONS`` (the first
    found in that order); it must have its image's size, non-zero pixels are anomalous. In the mask folder of an
    abnormal folder a mask of none of its images stops the set-up (mask folders of other types are not read).
    Without ``mask_dir`` the data is classification only: anomalous samples get ``mask_path=None``
    and ``has_masks`` is False, so the caller must skip pixel metrics (the all-zero masks are meaningless).

    Args:
        root: folder the other paths are relative to.
        category: a free name for the results (any name is valid).
        normal_dir: normal training images.
        abnormal_dirs: one folder or a list of folders of anomalous test images.
        normal_test_dir: normal test images; ``None`` holds out part of ``normal_dir``.
        normal_test_split: fraction of ``normal_dir`` held out for test when ``normal_test_dir`` is None.
        seed: seed of that hold-out.
        mask_dir: folder of per-type mask folders; ``None`` for classification-only data.
        mask_suffix: appended to the image stem to name its mask (e.g. ``_mask``).
        image_size: S, [H, W], or ``auto`` (the default): the shorter side 256, the longer one as the training
            images' aspect, both multiples of 32, so that photos are not squashed.
        Other arguments as :class:`AnomalyDataModule`.
    """

    benchmark = "folder"
    categories = ("folder",)
    root_holds = "your image folders"
    resize = "square"
    auto_size = True
    layout_help = (
        "folder layout: <root>/<normal_dir>/*, <root>/<abnormal_dir>/* per defect type, optional "
        "<root>/<normal_test_dir>/* and masks <root>/<mask_dir>/<abnormal dir name>/<stem><mask_suffix>.<png|bmp|...>"
    )

    def __init__(
        self, root: str, normal_dir: str, abnormal_dirs: str | Sequence[str], category: str = "folder",
        normal_test_dir: str | None = None, normal_test_split: float = 0.2, seed: int = 0,
        mask_dir: str | None = None, mask_suffix: str = "", **kwargs,
    ) -> None:  # fmt: skip
        if not 0.0 <= normal_test_split < 1.0:
            raise ConfigError(f"data.normal_test_split={normal_test_split} must be in [0, 1)")
        super().__init__(root, category, **kwargs)
        self.categories = (self.category,)  # the one category this instance serves
        self.normal_dir = normal_dir
        self.abnormal_dirs = [abnormal_dirs] if isinstance(abnormal_dirs, str) else list(abnormal_dirs)
        self.normal_test_dir = normal_test_dir
        self.normal_test_split = normal_test_split
        self.seed = seed
        self.mask_dir = mask_dir
        self.mask_suffix = mask_suffix
        self.has_masks = mask_dir is not None

    def setup(self, stage: str | None = None) -> None:
        self.resolve_image_size()
        super().setup(stage)

    @property
    def contract(self):
        self.resolve_image_size()
        return super().contract

    def resolve_image_size(self) -> None:
        """``image_size=auto`` becomes [H, W] when the images are first read (set-up), not when the config is built."""
        if self.image_size == "auto":
            self.image_size = self.auto_image_size()

    def auto_image_size(self) -> list[int]:
        """[H, W] with the shorter side 256 and the aspect of the training images (the median of up to 50, read from
        their headers), both sides multiples of 32."""
        images = self._images(self.normal_dir, "normal_dir")
        sizes = []
        for path in images[:: max(1, len(images) // 50)][:50]:
            try:
                with Image.open(path) as img:
                    sizes.append(img.size[::-1])  # (h, w); EXIF rotations are rare for a production camera
            except OSError:
                continue  # named by the data checks
        if not sizes:
            return [AUTO_SIDE, AUTO_SIDE]
        aspect = float(np.median([w / h for h, w in sizes]))
        longer = max(AUTO_SIDE, round(AUTO_SIDE * max(aspect, 1 / aspect) / AUTO_MULTIPLE) * AUTO_MULTIPLE)
        shape = [AUTO_SIDE, longer] if aspect >= 1 else [longer, AUTO_SIDE]
        spread = max(w / h for h, w in sizes) / min(w / h for h, w in sizes)
        log.info("data.image_size=auto: %s for training images of %dx%d (width x height)%s", shape, sizes[0][1],
                 sizes[0][0], "" if spread < 1.05 else f"; their aspects differ by up to {spread:.2f}x: those of "
                 "another aspect are stretched (data.resize=shorter_side_crop crops them instead)")  # fmt: skip
        return shape

    @classmethod
    def check_category(cls, category: str, root: Path | None = None) -> None:
        if not str(category).strip():
            raise DatasetLayoutError("folder data needs a non-empty data.category name: set data.category=NAME")

    def categories_on_disk(self) -> list[str]:
        raise ConfigError(
            "data.category=all means every category folder of a benchmark; folder data is one category: "
            "set data.category=NAME"
        )

    @property
    def category_root(self) -> Path:
        return self.require_root()  # one category: the root itself

    def _images(self, folder: str, what: str) -> list[Path]:
        path = require_dir(self.category_root / folder, what, f"check data.{what} ({self.layout_help})")
        return list_images(path, IMAGE_EXTENSIONS)

    def _normal_split(self) -> tuple[list[Path], list[Path]]:
        """(train, test) normal images; the hold-out depends only on the file names and the seed."""
        normals = self._images(self.normal_dir, "normal_dir")
        if self.normal_test_dir is not None:
            return normals, self._images(self.normal_test_dir, "normal_test_dir")
        order = np.random.default_rng(self.seed).permutation(len(normals))
        held = set(order[: round(self.normal_test_split * len(normals))].tolist())
        return [p for i, p in enumerate(normals) if i not in held], [p for i, p in enumerate(normals) if i in held]

    def _mask(self, image: Path, defect: str) -> Path:
        folder = self.category_root / self.mask_dir / defect
        for ext in IMAGE_EXTENSIONS:
            mask = folder / f"{image.stem}{self.mask_suffix}{ext}"
            if mask.is_file():
                return mask
        expected = f"{folder / (image.stem + self.mask_suffix)}.<png|bmp|...>"
        for suffix in (s for s in MASK_SUFFIXES if s != self.mask_suffix):
            found = next((folder / f"{image.stem}{suffix}{e}" for e in IMAGE_EXTENSIONS
                          if (folder / f"{image.stem}{suffix}{e}").is_file()), None)  # fmt: skip
            if found is not None:
                raise DatasetLayoutError(
                    f"anomalous image {image} has no mask at {expected}, but {found.name} "
                    f"lies there: set data.mask_suffix={suffix} (masks named <stem>{suffix})"
                )
        raise DatasetLayoutError(
            f"anomalous image {image} has no mask at {expected}: add the mask, remove the image, or set "
            "data.mask_dir=null for classification only"
        )

    def parse(self, split: str) -> list[Sample]:
        train, test = self._normal_split()
        if split == "train":
            return [Sample(p, 0, None, "good") for p in train]
        samples = [Sample(p, 0, None, "good") for p in test]
        for folder in self.abnormal_dirs:
            defect = Path(folder).name
            for image in self._images(folder, "abnormal_dirs"):
                samples.append(Sample(image, 1, self._mask(image, defect) if self.has_masks else None, defect))
        self._check_masks_used(samples)
        return sorted(samples, key=lambda s: (s.defect_type, s.image_path))

    def _check_masks_used(self, samples: list[Sample]) -> None:
        """In the mask folder of each of ``abnormal_dirs`` every mask must mark one of its images (mask folders of
        other types may lie beside them: the abnormal folders not chosen)."""
        if not self.has_masks:
            return
        used = {s.mask_path for s in samples if s.mask_path is not None}
        for folder in dict.fromkeys(self.abnormal_dirs):
            masks = self.category_root / self.mask_dir / Path(folder).name
            check_masks_used(masks, used, IMAGE_EXTENSIONS, self.category_root / folder)
