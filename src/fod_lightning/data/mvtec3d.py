"""MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images only, in its published on-disk layout."""

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import Sample, parse_type_folders

MVTEC3D_CATEGORIES = (
    "bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire",
)  # fmt: skip


class MVTec3DDataModule(AnomalyDataModule):
    """MVTec 3D-AD RGB: ``<root>/<cat>/<split>/<type>/rgb/*.png``, masks ``<root>/<cat>/test/<type>/gt/<stem>.png``.

    ``good`` is normal; mask pixels != 0 are anomalous. The ``xyz/`` point clouds beside ``rgb/`` are
    ignored (FOD is RGB only). Images are resized shorter side to S then centre-cropped, as the authors. The
    all-zero ``gt/`` masks of the normal test images are not read; a ``gt/`` mask of no ``rgb/`` image (of any test
    type) stops the set-up.

    Args:
        use_validation: also train on ``validation/good`` (the authors do not; off reproduces them).
        Other arguments as :class:`AnomalyDataModule`.
    """

    benchmark = "MVTec 3D-AD"
    categories = MVTEC3D_CATEGORIES
    resize = "shorter_side_crop"
    required_folder = "train/good/rgb"
    layout_folders = ("train", "validation", "test")
    layout_help = (
        "MVTec 3D-AD layout: <root>/<cat>/{train,validation}/good/rgb/*.png, <root>/<cat>/test/<type>/rgb/*.png, "
        "<root>/<cat>/test/<type>/gt/<stem>.png (download: mvtec.com/company/research/datasets/mvtec-3d-ad)"
    )

    def __init__(self, root: str, category: str, use_validation: bool = False, **kwargs) -> None:
        super().__init__(root, category, **kwargs)
        self.use_validation = use_validation

    def _parse_split(self, split: str, normal_only: bool) -> list[Sample]:
        def mask_of(defect, image):
            return image.parent.parent / "gt" / f"{image.stem}.png"  # <type>/rgb/x.png -> <type>/gt/x.png

        return parse_type_folders(self.category_root, split, "good", (".png",), mask_of, self.layout_help,
                                  image_subdir="rgb", normal_only=normal_only, normal_masks=True)  # fmt: skip

    def parse(self, split: str) -> list[Sample]:
        if split == "test":
            return self._parse_split("test", normal_only=False)
        samples = self._parse_split("train", normal_only=True)
        if self.use_validation:
            samples += self._parse_split("validation", normal_only=True)
        return samples
