"""MVTec AD (Bergmann et al., CVPR 2019) in its published on-disk layout."""

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import Sample, parse_type_folders

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip


class MVTecADDataModule(AnomalyDataModule):
    """MVTec AD: ``<root>/<category>/{train/good, test/<type>, ground_truth/<type>/<stem>_mask.png}``.

    Authors' preprocessing: resize to (S, S), grey categories replicated to RGB, ImageNet normalisation. A mask
    of no test image (its image missing, a ``ground_truth/<type>`` without ``test/<type>``, or one in
    ``ground_truth/good``) stops the set-up.
    """

    benchmark = "MVTec AD"
    categories = MVTEC_CATEGORIES
    resize = "square"
    required_folder = "train/good"
    layout_help = (
        "MVTec AD layout: <root>/<category>/train/good/*.png, <root>/<category>/test/<type>/*.png, "
        "<root>/<category>/ground_truth/<type>/<stem>_mask.png (download: mvtec.com/company/research/datasets/mvtec-ad)"
    )

    def parse(self, split: str) -> list[Sample]:
        root = self.category_root

        def mask_of(defect, image):
            return root / "ground_truth" / defect / f"{image.stem}_mask.png"

        return parse_type_folders(root, split, "good", (".png",), mask_of, self.layout_help,
                                  mask_root=root / "ground_truth")  # fmt: skip
