"""The unified setting's data: the normal training images of several categories as one training set, with no category
label anywhere (the samples carry none), and each category's own test split for testing, one category at a time."""

from pathlib import Path

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import Sample
from fod_lightning.errors import ConfigError

UNIFIED = "unified"  # the name of the one model's folder, where a category's would be


def check_unified_categories(names: list[str]) -> None:
    """The unified setting needs at least two categories (the job checks before building anything)."""
    if len(names) < 2:
        raise ConfigError(
            f"setting=unified trains one model for several categories, but data.category gives {', '.join(names)} "
            "alone: set data.category=all or a list, or setting=separate"
        )


class UnifiedDataModule(AnomalyDataModule):
    """The union of the categories' datamodules (each already built from the same data config, differing only in
    ``category``). Training, the reference split, validation and calibration hold every category's images (the hold-outs
    are drawn from the union, as for one category); ``test`` is the union too, but the job tests each category with
    its own datamodule (:attr:`parts`), so that every category has its metrics.

    Args:
        parts: category -> its datamodule.
    """

    def __init__(self, parts: dict[str, AnomalyDataModule]) -> None:
        check_unified_categories(list(parts))
        first = next(iter(parts.values()))
        self.parts = parts
        self.benchmark, self.resize, self.has_masks = (
            first.benchmark,
            first.resize,
            all(p.has_masks for p in parts.values()),
        )
        super().__init__(str(first.root), UNIFIED, first.image_size, first.batch_size, first.eval_batch_size,
                         first.num_workers, first.val_protocol, first.val_fraction, first.val_seed, first.augment,
                         first.mean, first.std, first.calibration_fraction, first.calibration_min_images,
                         first.resize)  # fmt: skip

    @classmethod
    def check_category(cls, category: str, root: Path | None = None) -> None:
        """Its one category is the union's name."""

    def parse(self, split: str) -> list[Sample]:
        return [sample for part in self.parts.values() for sample in part.parse(split)]

    @property
    def fitted_on(self) -> dict:
        return {"benchmark": self.benchmark, "category": UNIFIED, "categories": list(self.parts), "setting": UNIFIED,
                "root": str(self.root)}  # fmt: skip
