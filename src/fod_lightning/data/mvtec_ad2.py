"""MVTec AD 2 (Heckler-Kram et al., 2025) in its published on-disk layout: several-megapixel images of 8 objects, a
public test split with ground truth and two private ones scored by MVTec's evaluation server."""

from pathlib import Path

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import DatasetLayoutError, Sample, check_masks_used, list_images, require_dir
from fod_lightning.errors import ConfigError

AD2_OBJECTS = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
TEST_SPLITS = {"public": "test_public", "private": "test_private", "private_mixed": "test_private_mixed"}
PRIVATE = ("private", "private_mixed")
EXTENSIONS = (".png",)


class MVTecAD2DataModule(AnomalyDataModule):
    """MVTec AD 2: ``<root>/<object>/train/good``, ``validation/good``, ``test_public/{good,bad}`` with
    ``test_public/ground_truth/bad/<stem>_mask.png``, and ``test_private``, ``test_private_mixed`` (no ground truth).

    Model selection and thresholds use ``validation/good`` only (``val_protocol=from_train``: validated on those
    images and synthetic-defect copies of them; the thresholds calibrated on them), as the benchmark asks: its
    validation set holds no anomaly. ``test_split`` chooses what is tested: ``public`` (metrics), ``private`` or
    ``private_mixed`` (maps and the evaluation server's files only: ``test=false submission=true``). Any object folder
    in this layout is accepted, so that a user's own data in it works.

    Args:
        test_split: ``public``, ``private`` or ``private_mixed``.
        Other arguments as :class:`AnomalyDataModule`.
    """

    benchmark = "MVTec AD 2"
    categories = AD2_OBJECTS
    resize = "square"
    required_folder = "train/good"
    layout_folders = ("train", "validation", *TEST_SPLITS.values())
    layout_help = (
        "MVTec AD 2 layout: <root>/<object>/train/good/*.png, validation/good/*.png, test_public/{good,bad}/*.png, "
        "test_public/ground_truth/bad/<stem>_mask.png, test_private/*.png, test_private_mixed/*.png (download: "
        "mvtec.com/company/research/datasets/mvtec-ad-2)"
    )

    def __init__(self, root: str, category: str, test_split: str = "public", **kwargs) -> None:
        if test_split not in TEST_SPLITS:
            raise ConfigError(f"data.test_split={test_split!r} is unknown: use public, private or private_mixed")
        if kwargs.get("val_protocol", "from_train") != "from_train":
            raise ConfigError(
                "data.val_protocol=paper would validate on the test split; MVTec AD 2 selects models and calibrates on "
                "validation/good alone: set data.val_protocol=from_train"
            )
        kwargs["val_protocol"] = "from_train"
        super().__init__(root, category, **kwargs)
        self.test_split = test_split

    @classmethod
    def is_category_folder(cls, root: Path, name: str) -> bool:
        return (root / name / "train" / "good").is_dir()

    def _folder(self, *parts: str) -> Path:
        path = self.category_root.joinpath(*parts)
        return require_dir(
            path, f"MVTec AD 2 folder {'/'.join(parts)} of {self.category}:", f"add it ({self.layout_help})"
        )

    def parse(self, split: str) -> list[Sample]:
        if split == "train":
            return [Sample(p, 0, None, "good") for p in list_images(self._folder("train", "good"), EXTENSIONS)]
        if self.test_split in PRIVATE:
            return self.private_samples(self.test_split)
        return self.public_samples()

    def public_samples(self) -> list[Sample]:
        """``test_public``: good images, bad images with their masks (every one needed, and no mask without its
        image)."""
        samples = [Sample(p, 0, None, "good") for p in list_images(self._folder("test_public", "good"), EXTENSIONS)]
        masks = self._folder("test_public", "ground_truth", "bad")
        for image in list_images(self._folder("test_public", "bad"), EXTENSIONS):
            mask = masks / f"{image.stem}_mask.png"
            if not mask.is_file():
                raise DatasetLayoutError(f"anomalous image {image} has no mask at {mask}: add the mask (the dataset's "
                                         "test_public/ground_truth/bad) or remove the image")  # fmt: skip
            samples.append(Sample(image, 1, mask, "bad"))
        check_masks_used(masks, {s.mask_path for s in samples if s.mask_path}, EXTENSIONS,
                         self.category_root / "test_public" / "bad")  # fmt: skip
        return samples

    def private_samples(self, split: str) -> list[Sample]:
        """A private split's images: no ground truth (labels unknown; the server scores them)."""
        return [Sample(p, 0, None, "unknown") for p in list_images(self._folder(TEST_SPLITS[split]), EXTENSIONS)]

    def validation_normals(self) -> list[Sample]:
        return [Sample(p, 0, None, "good") for p in list_images(self._folder("validation", "good"), EXTENSIONS)]
