"""MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images only, in its published on-disk layout."""

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import Sample, list_images, require_dir, require_mask

MVTEC3D_CATEGORIES = (
    "bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire",
)  # fmt: skip


class MVTec3DDataModule(AnomalyDataModule):
    """MVTec 3D-AD RGB: ``<root>/<cat>/<split>/<type>/rgb/*.png``, masks ``<root>/<cat>/test/<type>/gt/<stem>.png``.

    ``good`` is normal; mask pixels != 0 are anomalous. The ``xyz/`` point clouds beside ``rgb/`` are
    ignored (FOD is RGB only). Images are resized shorter side to S then centre-cropped, as the authors.

    Args:
        use_validation: also train on ``validation/good`` (the authors do not; off reproduces them).
        Other arguments as :class:`AnomalyDataModule`.
    """

    benchmark = "MVTec 3D-AD"
    categories = MVTEC3D_CATEGORIES
    resize = "shorter_side_crop"
    layout_help = (
        "MVTec 3D-AD layout: <root>/<cat>/{train,validation}/good/rgb/*.png, <root>/<cat>/test/<type>/rgb/*.png, "
        "<root>/<cat>/test/<type>/gt/<stem>.png (download: mvtec.com/company/research/datasets/mvtec-3d-ad)"
    )

    def __init__(self, root: str, category: str, use_validation: bool = False, **kwargs) -> None:
        super().__init__(root, category, **kwargs)
        self.use_validation = use_validation

    def _parse_split(self, split: str, normal_only: bool) -> list[Sample]:
        root = self.category_root
        split_dir = require_dir(root / split, f"{split} folder", f"expected layout: {self.layout_help}")
        samples = []
        for type_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            defect = type_dir.name
            if normal_only and defect != "good":
                continue
            rgb = require_dir(type_dir / "rgb", "RGB folder", f"expected layout: {self.layout_help}")
            for image in list_images(rgb, (".png",)):
                if defect == "good":
                    samples.append(Sample(image, 0, None, defect))
                else:
                    mask = type_dir / "gt" / f"{image.stem}.png"
                    samples.append(Sample(image, 1, require_mask(image, mask), defect))
        return samples

    def parse(self, split: str) -> list[Sample]:
        if split == "test":
            return self._parse_split("test", normal_only=False)
        samples = self._parse_split("train", normal_only=True)
        if self.use_validation:
            samples += self._parse_split("validation", normal_only=True)
        return samples
