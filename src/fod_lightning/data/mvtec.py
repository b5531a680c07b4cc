"""MVTec AD (Bergmann et al., CVPR 2019) in its published on-disk layout."""

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import Sample, list_images, require_dir, require_mask

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip


def parse_mvtec_layout(category_root, split: str, layout_help: str) -> list[Sample]:
    """Samples of ``<category>/<split>/<type>/*.png``; ``good`` is normal, masks in
    ``<category>/ground_truth/<type>/<stem>_mask.png``. Sorted by (type, file name)."""
    split_dir = require_dir(category_root / split, f"{split} folder", f"expected layout: {layout_help}")
    samples = []
    for type_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        defect = type_dir.name
        if split == "train" and defect != "good":
            continue
        for image in list_images(type_dir, (".png",)):
            if defect == "good":
                samples.append(Sample(image, 0, None, defect))
            else:
                mask = category_root / "ground_truth" / defect / f"{image.stem}_mask.png"
                samples.append(Sample(image, 1, require_mask(image, mask), defect))
    return samples


class MVTecADDataModule(AnomalyDataModule):
    """MVTec AD: ``<root>/<category>/{train/good, test/<type>, ground_truth/<type>/<stem>_mask.png}``.

    Authors' preprocessing: resize to (S, S), grey categories replicated to RGB, ImageNet normalisation.
    """

    benchmark = "MVTec AD"
    categories = MVTEC_CATEGORIES
    resize = "square"
    layout_help = (
        "MVTec AD layout: <root>/<category>/train/good/*.png, <root>/<category>/test/<type>/*.png, "
        "<root>/<category>/ground_truth/<type>/<stem>_mask.png (download: mvtec.com/company/research/datasets/mvtec-ad)"
    )

    def parse(self, split: str):
        return parse_mvtec_layout(self.category_root, split, self.layout_help)
