"""BTAD (beanTech Anomaly Detection, Mishra et al. 2021) in its published on-disk layout."""

from fod_lightning.data.datamodule import AnomalyDataModule
from fod_lightning.data.samples import Sample, parse_type_folders

BTAD_CATEGORIES = ("01", "02", "03")
IMAGE_EXTENSIONS = (".bmp", ".png")


class BTADDataModule(AnomalyDataModule):
    """BTAD: ``<root>/<cat>/{train/ok, test/ok, test/ko, ground_truth/ko/<stem>.png}``.

    ``ok`` is normal, every other type anomalous. Images are ``.bmp`` or ``.png``; masks are
    ``<stem>.png`` except class ``03`` whose masks are ``<stem>.bmp`` (as published and as the
    authors' loader reads them). Images are resized shorter side to S then centre-cropped, since
    class ``03`` is not square. Files are read as they are; nothing is converted on disk. A mask of no test
    image stops the set-up, as for MVTec AD.
    """

    benchmark = "BTAD"
    categories = BTAD_CATEGORIES
    resize = "shorter_side_crop"
    required_folder = "train/ok"
    layout_help = (
        "BTAD layout: <root>/<cat>/train/ok/*.bmp|png, <root>/<cat>/test/{ok,ko}/*.bmp|png, "
        "<root>/<cat>/ground_truth/ko/<stem>.png (<stem>.bmp for 03), categories 01 02 03 "
        "(download: avires.dimi.uniud.it/papers/btad/btad.zip)"
    )

    def parse(self, split: str) -> list[Sample]:
        root = self.category_root
        mask_ext = ".bmp" if self.category == "03" else ".png"

        def mask_of(defect, image):
            return root / "ground_truth" / defect / f"{image.stem}{mask_ext}"

        return parse_type_folders(root, split, "ok", IMAGE_EXTENSIONS, mask_of, self.layout_help,
                                  mask_root=root / "ground_truth")  # fmt: skip
