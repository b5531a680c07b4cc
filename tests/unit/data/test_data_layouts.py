"""Real-benchmark datamodules on tiny datasets written in each published on-disk layout.

Every anomalous image holds one white rectangle on black and its mask marks the same rectangle, so
after resize / crop the batch mask must equal the expected rectangle and the image must be bright there.
"""

import shutil
from pathlib import Path

import pytest
import torch

from fod_lightning.data.batch import Batch
from fod_lightning.data.btad import BTADDataModule
from fod_lightning.data.folder import FolderDataModule
from fod_lightning.data.mvtec import MVTecADDataModule
from fod_lightning.data.mvtec3d import MVTec3DDataModule
from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fod_lightning.data.visa import VisADataModule
from helpers.datasets import (
    BTAD_FORMATS,
    SQUARE,
    SQUARE_EXPECTED,
    WIDE,
    WIDE_EXPECTED,
    S,
    rect_array,
    write_btad,
    write_folder,
    write_image,
    write_mask,
    write_mvtec,
    write_mvtec3d,
    write_visa,
)


def check_test_batch(dm, expected_rect: tuple[int, int, int, int], n_test: int) -> Batch:
    """Checks every test sample: shapes, dtypes, labels, masks and image exactly on the expected rectangle."""
    dm.eval_batch_size = n_test
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (n_test, 3, S, S) and batch.image.dtype == torch.float32
    assert batch.mask.shape == (n_test, S, S) and batch.mask.dtype == torch.uint8
    assert batch.label.dtype == torch.int64
    assert set(batch.mask.unique().tolist()) <= {0, 1}
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    bright = (batch.image * std + mean).mean(1) > 0.5
    expected = torch.as_tensor(rect_array((S, S), expected_rect, 1))
    for i, label in enumerate(batch.label.tolist()):
        if label == 0:
            assert batch.mask[i].sum() == 0 and not bright[i].any()
        else:
            assert torch.equal(batch.mask[i], expected), f"mask misaligned: {batch.path[i]}"
            assert torch.equal(bright[i].to(torch.uint8), expected), f"image misaligned: {batch.path[i]}"
    return batch


def assert_sorted(samples) -> None:
    assert samples == sorted(samples, key=lambda s: (s.defect_type, s.image_path))


def test_mvtec_ad_layout(tmp_path: Path) -> None:
    dm = MVTecADDataModule(write_mvtec(tmp_path), "bottle", image_size=S)
    assert len(dm.split("train")) == 3 and all(s.label == 0 for s in dm.split("train").samples)
    batch = check_test_batch(dm, SQUARE_EXPECTED, 4)
    assert batch.label.tolist() == [1, 1, 0, 0]
    assert batch.defect_type == ["crack", "crack", "good", "good"]


@pytest.mark.parametrize("cat", ["01", "02", "03"])
def test_btad_layout(tmp_path: Path, cat: str) -> None:
    ext, mask_ext, _, _, expected = BTAD_FORMATS[cat]
    dm = BTADDataModule(write_btad(tmp_path, cat), cat, image_size=S)
    train = dm.split("train").samples
    assert len(train) == 3 and {s.defect_type for s in train} == {"ok"} and train[0].image_path.suffix == ext
    test = dm.split("test").samples
    assert_sorted(test)
    assert [(s.defect_type, s.label) for s in test] == [("ko", 1)] * 2 + [("ok", 0)] * 2
    assert all(s.mask_path.suffix == mask_ext for s in test if s.label)
    check_test_batch(dm, expected, 4)  # for 03 this checks the centre-crop offset on a 96 x 64 image


def test_btad_crop_offset_matters(tmp_path: Path) -> None:
    """The expected rectangle of class 03 differs from what a plain resize would give."""
    dm = BTADDataModule(write_btad(tmp_path, "03"), "03", image_size=S)
    item = dm.split("test")[0]
    assert item["mask"][8, 5] == 1 and item["mask"][8, 13] == 0  # uncropped it would sit at x 12..19


@pytest.mark.parametrize("use_validation", [False, True])
def test_mvtec3d_layout(tmp_path: Path, use_validation: bool) -> None:
    dm = MVTec3DDataModule(write_mvtec3d(tmp_path), "bagel", use_validation=use_validation, image_size=S)
    train = dm.split("train").samples
    assert len(train) == (5 if use_validation else 3)
    assert {s.image_path.parent.name for s in train} == {"rgb"} and all(s.label == 0 for s in train)
    assert any("validation" in s.image_path.parts for s in train) == use_validation
    test = dm.split("test").samples
    assert [(s.defect_type, s.label) for s in test] == [("good", 0)] * 2 + [("hole", 1)] * 2
    assert all(s.image_path.suffix == ".png" for s in test)  # xyz/*.tiff ignored
    assert test[2].mask_path == tmp_path / "bagel" / "test" / "hole" / "gt" / "000.png"
    check_test_batch(dm, WIDE_EXPECTED, 4)


def test_visa_layout(tmp_path: Path) -> None:
    dm = VisADataModule(write_visa(tmp_path), "pcb1", image_size=S)
    train = dm.split("train").samples
    assert len(train) == 3 and all(s.label == 0 and "pcb1" in s.image_path.parts for s in train)
    test = dm.split("test").samples
    assert_sorted(test)
    assert [(s.defect_type, s.label) for s in test] == [("anomaly", 1)] * 2 + [("good", 0)] * 2
    assert test[0].mask_path == tmp_path / "pcb1" / "Data" / "Masks" / "Anomaly" / "000.png"
    check_test_batch(dm, SQUARE_EXPECTED, 4)


def test_folder_layout_with_masks(tmp_path: Path) -> None:
    root = write_folder(tmp_path)
    kwargs = dict(normal_dir="good", abnormal_dirs=["defects/scratch", "defects/dent"], mask_dir="masks")
    dm = FolderDataModule(root, category="my parts", mask_suffix="_mask", image_size=S, **kwargs)
    assert dm.has_masks and dm.categories == ("my parts",)
    train, test = dm.split("train").samples, dm.split("test").samples
    normals_test = [s for s in test if s.label == 0]
    assert len(train) == 8 and len(normals_test) == 2  # 20 % of 10 held out
    assert not {s.image_path for s in train} & {s.image_path for s in normals_test}
    assert [s.defect_type for s in test] == ["dent", "dent", "good", "good", "scratch", "scratch"]
    assert {s.mask_path.suffix for s in test if s.label} == {".png", ".bmp"}
    again = FolderDataModule(root, mask_suffix="_mask", **kwargs)
    assert again.parse("test") == dm.parse("test")  # the hold-out is deterministic
    check_test_batch(dm, SQUARE_EXPECTED, 6)


def test_folder_normal_test_dir_and_classification_only(tmp_path: Path) -> None:
    root = write_folder(tmp_path, masks=False)
    shutil.copytree(root / "good", root / "good_test")
    dm = FolderDataModule(root, "good", "defects/scratch", normal_test_dir="good_test", image_size=S)
    assert not dm.has_masks and dm.category == "folder"
    assert len(dm.split("train")) == 10
    test = dm.split("test").samples
    assert [(s.defect_type, s.label) for s in test] == [("good", 0)] * 10 + [("scratch", 1)] * 2
    assert all(s.mask_path is None for s in test)
    dm.eval_batch_size = 12
    batch = next(iter(dm.test_dataloader()))
    assert batch.label.sum() == 2 and batch.mask.sum() == 0


# Clear errors: each is a DatasetLayoutError whose message names the path and the fix.

DATAMODULES = {
    "mvtec": lambda root, **kw: MVTecADDataModule(root, kw.pop("category", "bottle"), image_size=S, **kw),
    "btad": lambda root, **kw: BTADDataModule(root, kw.pop("category", "03"), image_size=S, **kw),
    "mvtec3d": lambda root, **kw: MVTec3DDataModule(root, kw.pop("category", "bagel"), image_size=S, **kw),
    "visa": lambda root, **kw: VisADataModule(root, kw.pop("category", "pcb1"), image_size=S, **kw),
    "folder": lambda root, **kw: FolderDataModule(
        root, "good", ["defects/scratch"], mask_dir="masks", mask_suffix="_mask", image_size=S, **kw
    ),
}
WRITERS = {
    "mvtec": write_mvtec,
    "btad": lambda root: write_btad(root, "03"),
    "mvtec3d": write_mvtec3d,
    "visa": write_visa,
    "folder": write_folder,
}
FIRST_MASK = {
    "mvtec": "bottle/ground_truth/crack/000_mask.png",
    "btad": "03/ground_truth/ko/0000.bmp",
    "mvtec3d": "bagel/test/hole/gt/000.png",
    "visa": "pcb1/Data/Masks/Anomaly/000.png",
    "folder": "masks/scratch/d0_mask.png",
}
TRAIN_DIR = {
    "mvtec": "bottle/train/good",
    "btad": "03/train/ok",
    "mvtec3d": "bagel/train/good/rgb",
    "visa": None,  # from the split file
    "folder": "good",
}


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_missing_root(tmp_path: Path, name: str) -> None:
    dm = DATAMODULES[name](tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match=r"root .*nowhere does not exist: set data.root .* layout"):
        dm.setup()


@pytest.mark.parametrize(
    "cls, valid",
    [
        (MVTecADDataModule, "bottle, cable"),
        (BTADDataModule, "01, 02, 03 or all"),
        (MVTec3DDataModule, "bagel, cable_gland"),
        (VisADataModule, "candle, capsules"),
    ],
)
def test_unknown_category(tmp_path: Path, cls, valid: str) -> None:
    with pytest.raises(DatasetLayoutError, match=f"unknown .* category 'nope': use one of {valid}"):
        cls(tmp_path, "nope")


def test_folder_category_is_free_but_not_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="non-empty data.category"):
        FolderDataModule(tmp_path, "good", "bad", category=" ")


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_anomalous_image_without_mask(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path)
    (tmp_path / FIRST_MASK[name]).unlink()
    with pytest.raises(DatasetLayoutError, match=r"anomalous image .* has no mask at .*: add the mask"):
        DATAMODULES[name](tmp_path).setup()


def test_visa_empty_mask_column(tmp_path: Path) -> None:
    split_file = write_visa(tmp_path) / "split_csv" / "1cls.csv"
    split_file.write_text(split_file.read_text().replace("pcb1/Data/Masks/Anomaly/000.png", ""))
    with pytest.raises(DatasetLayoutError, match=r"000.JPG has no mask at an empty mask column"):
        DATAMODULES["visa"](tmp_path).setup()


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_mask_size_mismatch(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path)
    write_mask(tmp_path / FIRST_MASK[name], size=(20, 10))
    dm = DATAMODULES[name](tmp_path)
    # found when the datamodule is set up, before any training
    with pytest.raises(DatasetLayoutError, match=r"mask .* is 20x10 but image .* masks must have their image's size"):
        dm.setup()


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_empty_train_split(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path)
    if name == "visa":
        split_file = tmp_path / "split_csv" / "1cls.csv"
        split_file.write_text("\n".join(r for r in split_file.read_text().splitlines() if "pcb1,train" not in r))
    else:
        for f in (tmp_path / TRAIN_DIR[name]).iterdir():
            f.unlink()
    with pytest.raises(DatasetLayoutError, match=r"the train split of .* is empty: it needs images"):
        DATAMODULES[name](tmp_path).setup()


@pytest.mark.parametrize("name", list(DATAMODULES))
def test_unreadable_image(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path)
    dm = DATAMODULES[name](tmp_path)
    broken = dm.split("test").samples[0].image_path
    broken.write_bytes(b"not an image")
    with pytest.raises(DatasetLayoutError, match=r"cannot read image .*: replace or remove the file"):
        dm.split("test")[0]  # broken after set-up: found when read
    with pytest.raises(DatasetLayoutError, match=rf"cannot read image {broken} .*: replace or remove the file"):
        DATAMODULES[name](tmp_path).setup()  # broken before set-up: found before training


def test_visa_missing_split_file(tmp_path: Path) -> None:
    (write_visa(tmp_path) / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"split file .*1cls.csv does not exist: use the official download"):
        DATAMODULES["visa"](tmp_path).setup()


def test_visa_listed_image_missing(tmp_path: Path) -> None:
    (write_visa(tmp_path) / "pcb1" / "Data" / "Images" / "Normal" / "0000.JPG").unlink()
    with pytest.raises(DatasetLayoutError, match=r"0000.JPG listed in split_csv/1cls.csv does not exist"):
        DATAMODULES["visa"](tmp_path).setup()


def test_missing_split_folder(tmp_path: Path) -> None:
    write_btad(tmp_path, "01")
    shutil.rmtree(tmp_path / "01" / "test")
    with pytest.raises(DatasetLayoutError, match=r"test folder .*01/test does not exist: expected layout: BTAD"):
        BTADDataModule(tmp_path, "01", image_size=S).setup()


def test_folder_missing_normal_dir(tmp_path: Path) -> None:
    write_folder(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"normal_dir .*nothere does not exist: check data.normal_dir"):
        FolderDataModule(tmp_path, "nothere", "defects/scratch").setup()


# A mask of no image: usually a test image went missing. Paths relative to the root written by WRITERS.
UNMATCHED_MASKS = {
    "mvtec: mask without its image": (
        "mvtec",
        "bottle/ground_truth/crack/099_mask.png",
        r"mask \S+bottle/ground_truth/crack/099_mask.png belongs to no image in "
        r"\S+bottle/test/crack: restore the image it marks .*, or remove the mask$",
    ),
    "mvtec: mask folder without test folder": (
        "mvtec",
        "bottle/ground_truth/scratch/000_mask.png",
        r"mask folder \S+bottle/ground_truth/scratch belongs to no test images "
        r"\(\S+bottle/test/scratch does not exist\): restore the test images or "
        r"remove the mask folder$",
    ),
    "mvtec: mask of a normal image": (
        "mvtec",
        "bottle/ground_truth/good/000_mask.png",
        r"mask \S+bottle/ground_truth/good/000_mask.png is in the mask folder of the "
        r"normal images \(good\), which have no masks: if its image is anomalous, move "
        r"the image to \S+bottle/test/<defect type>/ .*; else remove the mask$",
    ),
    "btad: mask without its image": (
        "btad",
        "03/ground_truth/ko/0099.bmp",
        r"mask \S+03/ground_truth/ko/0099.bmp belongs to no image in \S+03/test/ko: ",
    ),
    "btad: two masks of one image": (
        "btad",
        "03/ground_truth/ko/0000.png",
        r"mask \S+03/ground_truth/ko/0000.png is a second mask of the image whose mask "
        r"is \S+03/ground_truth/ko/0000.bmp: remove one$",
    ),
    "btad: mask folder without test folder": (
        "btad",
        "03/ground_truth/crack/0000.bmp",
        r"mask folder \S+03/ground_truth/crack belongs to no test images",
    ),
    "mvtec3d: gt without its rgb image": (
        "mvtec3d",
        "bagel/test/hole/gt/099.png",
        r"mask \S+bagel/test/hole/gt/099.png belongs to no image in "
        r"\S+bagel/test/hole/rgb: restore",
    ),
    "mvtec3d: gt of a missing normal image": (
        "mvtec3d",
        "bagel/test/good/gt/099.png",
        r"mask \S+bagel/test/good/gt/099.png belongs to no image in "
        r"\S+bagel/test/good/rgb: restore",
    ),
    "folder: mask without its image": (
        "folder",
        "masks/scratch/d9_mask.png",
        r"mask \S+masks/scratch/d9_mask.png belongs to no image in \S+defects/scratch",
    ),
}


@pytest.mark.parametrize("case", list(UNMATCHED_MASKS))
def test_a_mask_of_no_image_stops_the_set_up_naming_it(tmp_path: Path, case: str) -> None:
    name, mask, message = UNMATCHED_MASKS[case]
    WRITERS[name](tmp_path)
    size = WIDE if name in ("btad", "mvtec3d") else SQUARE
    write_mask(tmp_path / mask, size=size)
    with pytest.raises(DatasetLayoutError, match=message):
        DATAMODULES[name](tmp_path).setup()


@pytest.mark.parametrize("name", ["mvtec", "btad", "mvtec3d", "folder"])
def test_a_removed_test_image_is_found_by_its_mask(tmp_path: Path, name: str) -> None:
    WRITERS[name](tmp_path)
    image = [s for s in DATAMODULES[name](tmp_path).parse("test") if s.label][-1].image_path
    image.unlink()
    with pytest.raises(DatasetLayoutError, match=rf"mask \S+ belongs to no image in {image.parent}: restore the image"):
        DATAMODULES[name](tmp_path).setup()


@pytest.mark.parametrize("name", ["mvtec", "btad", "mvtec3d", "folder"])
def test_hidden_and_other_files_in_mask_folders_are_skipped(tmp_path: Path, name: str) -> None:
    """As in image folders: hidden files and folders and files without an image extension are not masks; a mask
    folder of an abnormal folder not chosen (folder data: ``masks/dent``) is not checked."""
    WRITERS[name](tmp_path)
    masks = (tmp_path / FIRST_MASK[name]).parent
    junk = [".DS_Store", "._000_mask.png", "Thumbs.db", "notes.txt", ".ipynb_checkpoints/099_mask.png"]
    if name == "mvtec":  # hidden or empty mask folders of no test type
        junk += ["../.hidden/000_mask.png", "../scratch/notes.txt"]
    for rel in junk:
        (masks / rel).parent.mkdir(parents=True, exist_ok=True)
        (masks / rel).write_bytes(b"not a mask")
    dm = DATAMODULES[name](tmp_path)
    dm.setup()
    assert {s.mask_path.name for s in dm.split("test").samples if s.label} == {
        p.name for p in masks.iterdir() if p.is_file() and p.name[0] != "." and p.suffix in (".png", ".bmp")
    }


REQUIRED_FOLDER = {"mvtec": "train/good", "btad": "train/ok", "mvtec3d": "train/good/rgb"}


@pytest.mark.parametrize("name", list(REQUIRED_FOLDER))
def test_a_folder_without_the_required_training_folder_is_named_not_called_unknown(tmp_path: Path, name: str) -> None:
    write_image(tmp_path / "widget" / "test" / "good" / "000.png")
    required = REQUIRED_FOLDER[name]
    with pytest.raises(
        DatasetLayoutError,
        match=rf"category folder {tmp_path / 'widget'} exists but lacks {required}, "
        "the folder of normal training images the .* layout requires",
    ):
        DATAMODULES[name](tmp_path, category="widget")
    (tmp_path / "widget" / "train").mkdir()  # a train folder, but not the normal one
    normal = f"train/{required.split('/')[1]}"
    with pytest.raises(
        DatasetLayoutError,
        match=rf"{normal} folder {tmp_path / 'widget' / normal} does not exist: it "
        "holds the normal images",
    ):
        DATAMODULES[name](tmp_path, category="widget").setup()


def test_a_visa_folder_that_is_no_object_of_the_split_file_is_named(tmp_path: Path) -> None:
    write_image(write_visa(tmp_path) / "widget" / "Data" / "Images" / "Normal" / "0000.JPG")
    with pytest.raises(
        DatasetLayoutError,
        match=rf"folder {tmp_path / 'widget'} exists but 'widget' is not an object "
        r"of the VisA split file \S+split_csv/1cls.csv",
    ):
        DATAMODULES["visa"](tmp_path, category="widget")
    (tmp_path / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(
        DatasetLayoutError,
        match=r"VisA's categories are the objects of its split file \S+1cls.csv, "
        "which does not exist",
    ):
        DATAMODULES["visa"](tmp_path, category="widget")


def test_a_mask_named_in_another_case_is_the_same_file_on_a_case_insensitive_file_system(tmp_path):
    from fod_lightning.data.samples import same_file_in

    listed = tmp_path / "x_mask.PNG"
    listed.write_bytes(b"mask")
    assert same_file_in(listed, {tmp_path / "x_mask.png"}) is False  # case-sensitive here: another (missing) file
    spelled = tmp_path / "X_MASK.png"
    spelled.hardlink_to(listed)  # the same file under the other spelling, as a case-insensitive system resolves it
    assert same_file_in(listed, {spelled}) is True
    other = tmp_path / "x_mask.png"
    other.write_bytes(b"twin")
    assert same_file_in(listed, {other}) is False  # a real twin mask stays a twin
