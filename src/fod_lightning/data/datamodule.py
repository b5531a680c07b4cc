"""Base LightningDataModule: sample tables per split, loaders, category handling."""

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning import LightningDataModule
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from fod_lightning.data.batch import Batch
from fod_lightning.data.contract import DataContract
from fod_lightning.data.dataset import AnomalyDataset, check_samples
from fod_lightning.data.sampler import EpochShuffle
from fod_lightning.data.samples import DatasetLayoutError, Sample, is_hidden
from fod_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RESIZE_MODES
from fod_lightning.data.validation import VAL_PROTOCOLS, HeldOutDefectsDataset, held_out_count, split_held_out
from fod_lightning.errors import ConfigError
from fod_lightning.utils.checks import check_count

log = logging.getLogger(__name__)
METRICS_RESOLUTIONS = ("input", "original")


class AnomalyDataModule(LightningDataModule):
    """One category of a benchmark. Subclasses define ``benchmark``, ``categories``, ``resize`` and
    :meth:`parse` (the sample table of a split); the rest is shared.

    Validation protocol (``val_protocol``): ``paper`` evaluates the test split every validation epoch,
    as the authors did; ``from_train`` holds out ``val_fraction`` of the normal training images and
    validates on them plus synthetic-defect copies, so the test split is only touched at the end.

    Args:
        root: benchmark root folder (holds one folder per category).
        category: one category name (``all`` is expanded by the run entry).
        image_size: the network input: S (S x S) or [H, W].
        resize: how an image is brought to the input (``square``: aspect ignored; ``shorter_side_crop``: aspect kept,
            centre crop); None: the benchmark's rule (the authors').
        metrics_resolution: ``input``: pixel metrics on the maps and masks at the model's input size (the authors');
            ``original``: at each test image's own size, streamed (:mod:`fod_lightning.metrics.original_resolution`).
        batch_size: training batch size (authors: 1).
        eval_batch_size: batch size for reference, validation and test passes.
        num_workers: loader worker processes.
        val_protocol: ``paper`` or ``from_train``.
        val_fraction: fraction of normal training images held out under ``from_train``.
        val_seed: seed of the held-out split and its synthetic defects.
        augment: training augmentations (off by default, as the authors; see ``transforms.augmentations``).
            The reference split (``reference_dataloader``) is never augmented.
        mean, std: normalisation; set from the backbone's weights (``model.net.backbone.mean/std``).
        calibration_fraction: under ``paper``, fraction of the normal training images held out (not
            trained on) to calibrate the decision thresholds on; under ``from_train`` the held-out
            validation images serve. 0 calibrates on the training images themselves (biased low).
        calibration_min_images: the hold-out happens only when ``calibration_fraction`` of the training images
            is at least this many (the run config: ``model.calibration.min_images``, 10); fewer would give
            unreliable thresholds at the cost of training images, so the model then trains on every image, as
            the authors', and calibrates on the training images (marked ``held_out: false``).
    """

    benchmark: str = ""
    categories: tuple[str, ...] = ()
    resize: str = "square"
    layout_help: str = ""
    required_folder: str = "train"  # what every category folder holds: its normal training images
    layout_folders: tuple[str, ...] = ("train", "test", "ground_truth")  # any of them: meant as a category
    has_masks: bool = True  # False for classification-only data: pixel metrics are skipped
    auto_size: bool = False  # whether image_size=auto is resolved from the images (folder data)

    def __init__(
        self,
        root: str,
        category: str,
        image_size: int | Sequence[int] = 256,
        batch_size: int = 1,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        val_protocol: str = "paper",
        val_fraction: float = 0.2,
        val_seed: int = 0,
        augment: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        calibration_fraction: float = 0.0,
        calibration_min_images: int = 1,
        resize: str | None = None,
        metrics_resolution: str = "input",
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.category = str(category)
        self.image_size = image_size if isinstance(image_size, int | str) else [int(v) for v in image_size]
        if isinstance(image_size, str) and not (image_size == "auto" and self.auto_size):
            raise ConfigError(f"data.image_size={image_size!r} is not a size: give S (S x S) or [H, W]"
                              f"{' (auto is for data=folder)' if image_size == 'auto' else ''}")  # fmt: skip
        if resize is not None and resize not in RESIZE_MODES:
            raise ConfigError(f"data.resize={resize!r} is unknown: use one of {', '.join(RESIZE_MODES)}, or null for "
                              f"the benchmark's ({type(self).resize})")  # fmt: skip
        self.resize = resize or type(self).resize
        if metrics_resolution not in METRICS_RESOLUTIONS:
            raise ConfigError(f"data.metrics_resolution={metrics_resolution!r} is unknown: use input or original")
        self.metrics_resolution = metrics_resolution
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        if val_protocol not in VAL_PROTOCOLS:
            raise ConfigError(f"data.val_protocol={val_protocol!r} is unknown; use one of {VAL_PROTOCOLS}")
        self.val_protocol, self.val_fraction, self.val_seed = val_protocol, val_fraction, val_seed
        self.augment = augment
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if not 0.0 <= calibration_fraction < 1.0:
            raise ConfigError(f"data.calibration_fraction={calibration_fraction} must be in [0, 1)")
        self.calibration_fraction = calibration_fraction
        check_count("data.calibration_min_images", calibration_min_images, 1, "the fewest images a calibration "
                    "hold-out may take", 10)  # fmt: skip
        self.calibration_min_images = calibration_min_images
        self.calibration_skipped: str | None = None  # why the calibration hold-out was not made, if it was not
        self.check_category(self.category, self.root)
        self._splits: dict[str, Dataset] = {}
        self._served: Dataset | None = None  # training batches a model serves (serve_training)

    @classmethod
    def check_category(cls, category: str, root: Path | None = None) -> None:
        """An official name, or (with ``root``) a folder of ``root`` in this benchmark's layout."""
        if category in cls.categories or (root is not None and cls.is_category_folder(Path(root), category)):
            return
        if root is not None and cls.is_partial_category(Path(root), category):
            raise DatasetLayoutError(cls.not_a_category(Path(root), category))
        raise DatasetLayoutError(
            f"unknown {cls.benchmark} category {category!r}: use one of {', '.join(cls.categories)} or all, "
            f"or a folder <data.root>/{category} in the {cls.benchmark} layout"
        )

    @classmethod
    def is_partial_category(cls, root: Path, name: str) -> bool:
        """Whether ``root/name`` holds some of this layout's folders (``test/``...): a category missing its required
        folder, rather than an unrelated folder (``notes/``), which gets the unknown-category message."""
        return any((root / name / folder).is_dir() for folder in cls.layout_folders)

    @classmethod
    def not_a_category(cls, root: Path, name: str) -> str:
        """Why the folder ``root/name`` (which exists) is not a category of this layout, and the fix."""
        return (
            f"category folder {root / name} exists but lacks {cls.required_folder}, the folder of normal training "
            f"images the {cls.benchmark} layout requires: add the images there, or set data.category to another "
            f"folder. {cls.layout_help}"
        )

    @classmethod
    def is_category_folder(cls, root: Path, name: str) -> bool:
        """Whether ``root/name`` holds a category in this layout (it has a ``train`` folder)."""
        return (root / name / "train").is_dir()

    def categories_on_disk(self) -> list[str]:
        """Every category under ``root`` in this layout, official names or not, sorted."""
        root = self.require_root()
        return sorted(p.name for p in root.iterdir()
                      if p.is_dir() and not is_hidden(p) and self.is_category_folder(root, p.name))  # fmt: skip

    root_holds: str = "the category folders"  # what data.root must contain, for the error message

    @classmethod
    def check_root(cls, root: str | Path) -> None:
        """Before a run builds its model (whose weights may be downloaded): ``root`` must be a folder."""
        if not Path(root).expanduser().is_dir():
            raise cls.missing_root(Path(root).expanduser())

    @classmethod
    def missing_root(cls, root: Path) -> DatasetLayoutError:
        return DatasetLayoutError(
            f"{cls.benchmark} root {root} does not exist: set data.root to the folder that holds "
            f"{cls.root_holds}. {cls.layout_help}"
        )

    def require_root(self) -> Path:
        if not self.root.is_dir():
            raise self.missing_root(self.root)
        return self.root

    @property
    def category_root(self) -> Path:
        return self.require_root() / self.category

    def parse(self, split: str) -> list[Sample]:
        """The sorted sample table of ``split`` (``train`` or ``test``)."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Hook for benchmarks that build or verify files on disk once (rank zero)."""

    def check(self) -> "AnomalyDataModule":
        """The data checked before anything slow (a model, a fit): files built if the benchmark builds them, every
        split's sample table parsed, every image and mask decoded once (:meth:`setup`). Returns itself."""
        self.prepare_data()
        self.setup()
        return self

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        transform = self.contract.transform()
        for split in ("train", "test"):
            samples = self.parse(split)
            if not samples:
                raise DatasetLayoutError(
                    f"the {split} split of {self.category_root} is empty: it needs images. {self.layout_help}"
                )
            check_samples(samples)
            self._splits[split] = AnomalyDataset(samples, transform)
        self._splits["val"] = self._splits["test"]
        if self.val_protocol == "from_train":
            held = self.validation_normals()
            if held is None:  # a fraction of the training images
                train, held = split_held_out(self._splits["train"].samples, self.val_fraction, self.val_seed)
            else:  # the benchmark's own validation images: all the training images train
                check_samples(held)
                train = self._splits["train"].samples
            self._splits["train"] = AnomalyDataset(train, transform)
            self._splits["val"] = HeldOutDefectsDataset(held, transform, self.val_seed)
            self._splits["calibration"] = AnomalyDataset(held, transform)
        elif self.calibration_fraction > 0 and self._holds_out_calibration(len(self._splits["train"])):
            train, held = split_held_out(self._splits["train"].samples, self.calibration_fraction, self.val_seed + 1,
                                         "data.calibration_fraction")  # fmt: skip
            self._splits["train"] = AnomalyDataset(train, transform)
            self._splits["calibration"] = AnomalyDataset(held, transform)
        else:
            self._splits["calibration"] = self._splits["train"]
        self._splits["reference"] = self._splits["train"]
        if self.augment:
            augmented = self.contract.transform(augment=True)
            self._splits["train"] = AnomalyDataset(self._splits["train"].samples, augmented)

    def validation_normals(self) -> list[Sample] | None:
        """Normal images a benchmark keeps for validation (MVTec AD 2's ``validation/good``): under ``from_train`` they
        are the held-out images (validated on with synthetic-defect copies, calibrated on) instead of a fraction of the
        training images. None: the benchmark has none."""
        return None

    def _holds_out_calibration(self, n_train: int) -> bool:
        """Whether ``calibration_fraction`` of ``n_train`` images gives ``calibration_min_images``; if not, the
        reason is kept in :attr:`calibration_skipped` (the run's log says it)."""
        n_held = held_out_count(self.calibration_fraction, n_train)
        if n_held >= self.calibration_min_images:
            return True
        self.calibration_skipped = (
            f"data.calibration_fraction={self.calibration_fraction} would hold out {n_held} of the {n_train} "
            f"training images of {self.category}, fewer than data.calibration_min_images="
            f"{self.calibration_min_images}: trained on all {n_train} (as the authors) and the thresholds calibrated "
            "on them (held_out: false, biased low); add normal images or set data.val_protocol=from_train "
            "for held-out thresholds"
        )
        log.info(self.calibration_skipped)
        return False

    @property
    def calibration_held_out(self) -> bool:
        """Whether the calibration images are normal images the model was not trained on."""
        if self.val_protocol == "from_train":
            return True
        self.setup()
        return self.calibration_fraction > 0 and self.calibration_skipped is None

    @property
    def contract(self) -> DataContract:
        """What a model fitted on this data expects of its input (saved in its checkpoints)."""
        return DataContract(self.image_size, self.resize, self.mean, self.std)

    @property
    def fitted_on(self) -> dict:
        return {"benchmark": self.benchmark, "category": self.category, "root": str(self.root)}

    def split(self, name: str) -> Dataset:
        self.setup()
        return self._splits[name]

    def serve_training(self, dataset: Dataset) -> None:
        """Training batches from ``dataset`` instead of the training images: a model that computes what it trains on
        once serves it (``AnomalyModule.training_dataset``). The dataset is in memory (no workers) and its
        ``__getitems__`` returns a collated batch."""
        self._splits["train"] = dataset
        self._served = dataset

    @property
    def pin_memory(self) -> bool:
        """Page-locked batches when training on a GPU (faster, asynchronous host-to-device copies)."""
        return self.trainer is not None and isinstance(self.trainer.accelerator, CUDAAccelerator)

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        dataset = self.split(split)
        served = dataset is self._served  # in memory, collated by the dataset itself: no workers needed
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=EpochShuffle(len(dataset), torch.initial_seed()) if shuffle else None,
            num_workers=0 if served else self.num_workers,
            collate_fn=collated if served else Batch.collate,
            persistent_workers=self.num_workers > 0 and not served,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def reference_dataloader(self) -> DataLoader:
        """All normal training images once, in order (for the reference features; held-out images
        of ``from_train`` are excluded)."""
        return self._loader("reference", self.eval_batch_size, shuffle=False)

    def calibration_dataloader(self) -> DataLoader:
        """Normal images for threshold calibration, once, in order (unsharded: each process sees all)."""
        return self._loader("calibration", self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._unpadded(self._loader("val", self.eval_batch_size, shuffle=False))

    def test_dataloader(self) -> DataLoader:
        return self._unpadded(self._loader("test", self.eval_batch_size, shuffle=False))

    def _unpadded(self, loader: DataLoader) -> DataLoader:
        """Under DDP every evaluation image goes to exactly one process: Lightning's default sampler pads the
        shards to equal length with duplicates, which would be scored twice. The same loader with an unpadded
        sampler (shards may differ by one image; the metrics' cat-state sync gathers unequal shards)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return loader
        sampler = UnrepeatedDistributedSampler(
            loader.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
        )
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            persistent_workers=loader.persistent_workers,
            pin_memory=loader.pin_memory,
        )


def collated(batch):
    """The collate function of a dataset whose ``__getitems__`` already returns the batch."""
    return batch
