"""Base LightningDataModule: sample tables per split, loaders, category handling."""

from pathlib import Path

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from fod_lightning.data.batch import Batch
from fod_lightning.data.dataset import AnomalyDataset
from fod_lightning.data.samples import DatasetLayoutError, Sample
from fod_lightning.data.transforms import build_transform


class AnomalyDataModule(LightningDataModule):
    """One category of a benchmark. Subclasses define ``benchmark``, ``categories``, ``resize`` and
    :meth:`parse` (the sample table of a split); the rest is shared.

    Validation follows the authors' protocol: the test split is evaluated each validation epoch.

    Args:
        root: benchmark root folder (holds one folder per category).
        category: one category name (``all`` is expanded by the run entry).
        image_size: side S of the square network input.
        batch_size: training batch size (authors: 1).
        eval_batch_size: batch size for reference, validation and test passes.
        num_workers: loader worker processes.
    """

    benchmark: str = ""
    categories: tuple[str, ...] = ()
    resize: str = "square"
    layout_help: str = ""

    def __init__(
        self,
        root: str,
        category: str,
        image_size: int = 256,
        batch_size: int = 1,
        eval_batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        self.category = str(category)
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.check_category(self.category)
        self._splits: dict[str, AnomalyDataset] = {}

    @classmethod
    def check_category(cls, category: str) -> None:
        if category not in cls.categories:
            raise DatasetLayoutError(
                f"unknown {cls.benchmark} category {category!r}: use one of {', '.join(cls.categories)} or all"
            )

    @property
    def category_root(self) -> Path:
        if not self.root.is_dir():
            raise DatasetLayoutError(
                f"{self.benchmark} root {self.root} does not exist: set data.root to the folder that holds the "
                f"category folders. {self.layout_help}"
            )
        return self.root / self.category

    def parse(self, split: str) -> list[Sample]:
        """The sorted sample table of ``split`` (``train`` or ``test``)."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Hook for benchmarks that build or verify files on disk once (rank zero)."""

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        transform = build_transform(self.image_size, self.resize)
        for split in ("train", "test"):
            samples = self.parse(split)
            if not samples:
                raise DatasetLayoutError(
                    f"the {split} split of {self.category_root} is empty: it needs images. {self.layout_help}"
                )
            self._splits[split] = AnomalyDataset(samples, transform)

    def split(self, name: str) -> AnomalyDataset:
        self.setup()
        return self._splits[name]

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.split(split),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=Batch.collate,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def reference_dataloader(self) -> DataLoader:
        """All normal training images once, in order (for the reference features)."""
        return self._loader("train", self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
