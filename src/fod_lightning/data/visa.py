"""VisA (Zou et al., ECCV 2022) as downloaded, with its one-class split file ``split_csv/1cls.csv``."""

import csv
from pathlib import Path

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import DatasetLayoutError, Sample

VISA_CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)  # fmt: skip
SPLIT_FILE = "split_csv/1cls.csv"
SPLIT_COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}


class VisADataModule(AnomalyDataModule):
    """VisA: samples come from ``<root>/split_csv/1cls.csv``, the standard one-class split.

    Each row is ``object,split,label,image,mask`` with paths relative to the root (``.JPG`` images,
    ``.png`` masks whose non-zero pixels are anomalous; empty mask for normal rows). The defect type is
    ``good`` for normal and ``anomaly`` for anomalous images (the split file has no finer type).
    Images are resized to (S, S).
    """

    benchmark = "VisA"
    categories = VISA_CATEGORIES
    resize = "square"
    layout_help = (
        f"VisA layout: <root>/{SPLIT_FILE} (columns {','.join(SPLIT_COLUMNS)}) and the image and mask paths it "
        "lists, relative to <root>, e.g. <root>/candle/Data/Images/Normal/0000.JPG "
        "(download: github.com/amazon-science/spot-diff)"
    )

    @classmethod
    def is_category_folder(cls, root: Path, name: str) -> bool:
        """Categories are the objects of the split file (official names or not)."""
        split_file = root / SPLIT_FILE
        if not split_file.is_file():
            return False
        with split_file.open(newline="") as f:
            return any(row.get("object") == name for row in csv.DictReader(f))

    @classmethod
    def is_partial_category(cls, root: Path, name: str) -> bool:
        """Any folder: VisA's categories are named by its split file, not by folders."""
        return (root / name).is_dir()

    @classmethod
    def not_a_category(cls, root: Path, name: str) -> str:
        split_file = root / SPLIT_FILE
        if not split_file.is_file():
            return (
                f"VisA's categories are the objects of its split file {split_file}, which does not exist (the "
                f"folder {root / name} alone is not a category): use the official download. {cls.layout_help}"
            )
        return (f"folder {root / name} exists but {name!r} is not an object of the VisA split file {split_file} "
                f"(VisA's categories are its objects): add its rows there, or use one of "
                f"{', '.join(cls.categories)} or all")  # fmt: skip

    def categories_on_disk(self) -> list[str]:
        return sorted({row["object"] for row in self._rows()})

    def _rows(self) -> list[dict[str, str]]:
        split_file = self.category_root.parent / SPLIT_FILE  # category_root raises if the root is missing
        if not split_file.is_file():
            raise DatasetLayoutError(
                f"VisA split file {split_file} does not exist: use the official download, which ships it. "
                f"{self.layout_help}"
            )
        with split_file.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetLayoutError(
                    f"VisA split file {split_file} lacks columns {', '.join(missing)}: "
                    f"it needs {','.join(SPLIT_COLUMNS)}"
                )
            return list(reader)

    def parse(self, split: str) -> list[Sample]:
        samples = []
        for row in self._rows():
            if row["object"] != self.category or row["split"] != split:
                continue
            image = self.root / row["image"]
            if row["label"] not in LABELS:
                raise DatasetLayoutError(f"VisA row for {image} has label {row['label']!r}: use normal or anomaly")
            if not image.is_file():
                raise DatasetLayoutError(
                    f"image {image} listed in {SPLIT_FILE} does not exist: re-extract the VisA download"
                )
            if LABELS[row["label"]] == 0:
                samples.append(Sample(image, 0, None, "good"))
                continue
            mask = self.root / row["mask"] if row["mask"].strip() else None
            if mask is None or not mask.is_file():
                raise DatasetLayoutError(
                    f"anomalous image {image} has no mask at {mask or 'an empty mask column'} in {SPLIT_FILE}: "
                    "add the mask or remove the row"
                )
            samples.append(Sample(image, 1, mask, "anomaly"))
        return sorted(samples, key=lambda s: (s.defect_type, s.image_path))
