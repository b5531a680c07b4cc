"""Unusual input files: each is either converted (and how is tested) or stops before training with one line naming
the file and the fix. Tiny images; sample tables and reading functions directly, one end-to-end run."""

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fod_lightning.data.dataset import AnomalyDataset, check_samples
from fod_lightning.data.folder import FolderDataModule
from fod_lightning.data.mvtec import MVTecADDataModule
from fod_lightning.data.samples import DatasetLayoutError, Sample
from fod_lightning.data.transforms import build_transform, read_image, read_mask
from fod_lightning.errors import ConfigError
from fod_lightning.metrics import AnomalyMetrics
from fod_lightning.metrics.collection import METRICS
from helpers.datasets import SQUARE_RECT, write_folder, write_image, write_mvtec

RAMP = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))  # 32 x 32 grey ramp 0..248
RECT = np.zeros((32, 32), dtype=np.uint8)
RECT[8:16, 4:20] = 1
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], dtype=np.uint8)
INDEX = (np.arange(32 * 32).reshape(32, 32) // 7 % 4).astype(np.uint8)
COLOUR = np.stack([RAMP, 255 - RAMP, RAMP // 2], axis=-1)


def grey(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2)


def palette_image(transparency: bool = False) -> Image.Image:
    img = Image.fromarray(INDEX, "L").convert("P")
    img.putpalette(PALETTE.ravel().tolist())
    if transparency:
        img.info["transparency"] = 0
    return img


def cmyk() -> Image.Image:
    c = np.zeros((32, 32, 4), dtype=np.uint8)
    c[:16, :, 0] = 255  # cyan ink on the top half
    c[:, :8, 3] = 100  # some black ink on the left
    return Image.fromarray(c, "CMYK")


CMYK_RGB = np.full((32, 32, 3), 255, dtype=np.uint8)
CMYK_RGB[:16, :, 0] = 0
CMYK_RGB[:, :8] = np.clip(CMYK_RGB[:, :8].astype(int) - 100, 0, 255)


def save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def save_16bit_rgb(path: Path, rgb8: np.ndarray) -> Path:
    cv2.imwrite(str(path), (rgb8.astype(np.uint16) * 257)[..., ::-1])  # 48-bit PNG, values k * 257
    return path


# name: (writer of the file, expected RGB array, tolerance)
MODES = {
    "grey": (lambda p: save(Image.fromarray(RAMP, "L"), p / "x.png"), grey(RAMP), 0),
    "rgba, alpha dropped": (lambda p: save(Image.fromarray(np.dstack([COLOUR, RAMP]), "RGBA"), p / "x.png"), COLOUR, 0),
    "grey + alpha": (lambda p: save(Image.fromarray(np.dstack([RAMP, 255 - RAMP]), "LA"), p / "x.png"), grey(RAMP), 0),
    "palette": (lambda p: save(palette_image(), p / "x.png"), PALETTE[INDEX], 0),
    "palette + transparency": (lambda p: save(palette_image(True), p / "x.png"), PALETTE[INDEX], 0),
    "palette gif": (lambda p: save(palette_image(), p / "x.gif"), PALETTE[INDEX], 0),
    "bilevel": (lambda p: save(Image.fromarray(RAMP > 127).convert("1"), p / "x.png"), grey((RAMP > 127) * 255), 0),
    "16-bit grey png": (lambda p: save(Image.fromarray(RAMP.astype(np.uint16) * 257), p / "x.png"), grey(RAMP), 0),
    "16-bit grey tiff": (lambda p: save(Image.fromarray(RAMP.astype(np.uint16) * 257), p / "x.tif"), grey(RAMP), 0),
    "16-bit rgb png": (lambda p: save_16bit_rgb(p / "x.png", COLOUR), COLOUR, 0),
    "cmyk tiff": (lambda p: save(cmyk(), p / "x.tif"), CMYK_RGB, 0),
    "cmyk jpeg": (lambda p: save(cmyk(), p / "x.jpg"), CMYK_RGB, 12),
    "bmp": (lambda p: save(Image.fromarray(COLOUR), p / "x.bmp"), COLOUR, 0),
}


@pytest.mark.parametrize("name", list(MODES))
def test_image_modes_are_read_as_8_bit_rgb(tmp_path, name):
    write, expected, tolerance = MODES[name]
    image = read_image(write(tmp_path))
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert np.abs(image.astype(int) - expected).max() <= tolerance


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 257, 32896, 65279, 65535]], dtype=np.uint16)  # 257 * k -> k
    Image.fromarray(values).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").convert("RGB").getpixel((1, 0)) == (255, 255, 255)  # Pillow clips
    assert read_image(tmp_path / "x.png")[0, :, 0].tolist() == [0, 1, 1, 128, 254, 255]


def test_exif_orientation_is_applied_to_images_and_masks(tmp_path):
    """Orientation 6: the stored 32 x 16 pixels are shown turned 90 degrees clockwise, 16 wide and 32 high, the
    stored top-left corner at the top right. Images and masks are read as shown (the authors' PIL pipeline would
    have read the stored pixels)."""
    stored = np.zeros((16, 32), dtype=np.uint8)
    stored[:4, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(grey(stored)).save(tmp_path / "x.jpg", exif=exif, quality=95)
    Image.fromarray(stored).save(tmp_path / "x_rotated_mask.png", exif=exif)
    assert np.asarray(Image.open(tmp_path / "x.jpg").convert("RGB")).shape == (16, 32, 3)
    shown = np.zeros((32, 16), dtype=np.uint8)
    shown[:4, 12:] = 1
    image = read_image(tmp_path / "x.jpg")
    assert image.shape == (32, 16, 3) and np.array_equal(image[..., 0] > 127, shown.astype(bool))
    assert np.array_equal(read_mask(tmp_path / "x_rotated_mask.png"), shown)

    Image.fromarray(shown * 255).save(tmp_path / "x_upright_mask.png")  # drawn on the image as shown
    Image.fromarray(stored).save(tmp_path / "x_stored_mask.png")  # drawn on the stored pixels
    for mask in ("x_rotated_mask.png", "x_upright_mask.png"):
        check_samples([Sample(tmp_path / "x.jpg", 1, tmp_path / mask, "d")])
    with pytest.raises(DatasetLayoutError, match=r"x_stored_mask.png is 32x16 but image .*x.jpg is 16x32 \(swapped: "
                                                 r"is one of them rotated by an EXIF orientation tag"):  # fmt: skip
        check_samples([Sample(tmp_path / "x.jpg", 1, tmp_path / "x_stored_mask.png", "d")])


MASKS = {  # name: writer of a mask whose RECT pixels are anomalous
    "0/255": lambda p: save(Image.fromarray(RECT * 255), p),
    "class id 1": lambda p: save(Image.fromarray(RECT), p),
    "class id 2 (VisA)": lambda p: save(Image.fromarray(RECT * 2), p),
    "grey 128": lambda p: save(Image.fromarray(RECT * 128), p),
    "rgb red": lambda p: save(Image.fromarray(np.dstack([RECT * 255, RECT * 0, RECT * 0])), p),
    "rgb blue": lambda p: save(Image.fromarray(np.dstack([RECT * 0, RECT * 0, RECT * 255])), p),
    "rgba, alpha ignored": lambda p: save(Image.fromarray(np.dstack([RECT * 255] * 3 + [np.full_like(RECT, 7)])), p),
    "palette": lambda p: save(Image.fromarray(RECT).convert("P"), p),
    "bilevel": lambda p: save(Image.fromarray(RECT.astype(bool)).convert("1"), p),
    "16-bit value 1": lambda p: save(Image.fromarray(RECT.astype(np.uint16)), p),
    "16-bit 65535": lambda p: save(Image.fromarray(RECT.astype(np.uint16) * 65535), p),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_any_non_zero_mask_value_is_anomalous(tmp_path, name):
    path = MASKS[name](tmp_path / "mask.png")
    mask = read_mask(path)
    assert mask.dtype == np.uint8 and np.array_equal(mask, RECT)


def truncated(src_writer, name):
    def write(p: Path) -> Path:
        whole = src_writer(p / f"whole{Path(name).suffix}").read_bytes()
        (p / name).write_bytes(whole[: len(whole) // 2])
        return p / name

    return write


NOISE = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
BROKEN = {  # name: (writer of a broken image, what the line says after the path)
    "zero bytes": (lambda p: save_bytes(p / "x.png", b""), r"\(an empty file\): replace or remove the file"),
    "text named .png": (lambda p: save_bytes(p / "x.png", b"hello"), r"\(not an image file Pillow can read\): replace"),
    "truncated png": (truncated(lambda q: save(Image.fromarray(NOISE), q), "x.png"), r"(?i:truncated).*: replace"),
    "truncated jpeg": (truncated(lambda q: save(Image.fromarray(NOISE), q), "x.jpg"), r"(?i:truncated).*: replace"),
    "floating point tiff": (lambda p: save(Image.fromarray(RAMP.astype(np.float32)), p / "x.tif"),
                            r"holds floating-point values: save it as an 8- or 16-bit image"),
    "32-bit tiff": (lambda p: save(Image.fromarray(RAMP.astype(np.int32) * 1000), p / "x.tif"),
                    r"holds 32-bit values outside 0-65535: save it as 8- or 16-bit"),
}  # fmt: skip


def save_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_images_stop_naming_the_file(tmp_path, name):
    write, says = BROKEN[name]
    path = write(tmp_path)
    with pytest.raises(DatasetLayoutError, match=rf"^(cannot read )?image {path} .*{says}"):
        check_samples([Sample(path, 0, None, "good")])


@pytest.mark.parametrize("damage", ["truncated image", "truncated mask", "mask of another size"])
def test_broken_files_stop_the_set_up_before_training(tmp_path, damage):
    """A truncated file has a readable header: only decoding finds it, and set-up decodes every file once."""
    write_mvtec(tmp_path)
    image = tmp_path / "bottle" / "test" / "crack" / "001.png"
    mask = tmp_path / "bottle" / "ground_truth" / "crack" / "001_mask.png"
    if damage == "mask of another size":
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(mask)
        expected = rf"mask {mask} is 8x8 but image {image} is 64x64: masks must have their image's size"
    else:
        path = image if damage == "truncated image" else mask
        Image.fromarray(np.dstack([NOISE[..., 0]] * 3) if path == image else NOISE[..., 0]).resize((64, 64)).save(path)
        path.write_bytes(path.read_bytes()[:200])
        with Image.open(path) as img:
            assert img.size == (64, 64)  # the header is whole
        expected = rf"cannot read {'image' if path == image else 'mask'} {path} \(image file is truncated.*\): replace"
    with pytest.raises(DatasetLayoutError, match=expected):
        MVTecADDataModule(tmp_path, "bottle", image_size=32).setup()


JUNK = {  # files an OS, an editor or an archive leaves in image folders
    ".DS_Store": b"\x00\x00\x00\x01Bud1",
    "._000.png": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X",  # AppleDouble resource fork beside 000.png
    "Thumbs.db": b"\xd0\xcf\x11\xe0",
    "desktop.ini": b"[.ShellClassInfo]",
    "notes.txt": b"camera 2",
    "000.png~": b"editor backup",
}


def add_junk(folder: Path) -> None:
    for name, data in JUNK.items():
        (folder / name).write_bytes(data)
    (folder / ".ipynb_checkpoints").mkdir()
    shutil.copy(next(folder.glob("*.png")), folder / ".ipynb_checkpoints" / "000-checkpoint.png")


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    clean, dirty = write_mvtec(tmp_path / "clean"), write_mvtec(tmp_path / "dirty")
    write_folder(tmp_path / "folder_clean")
    write_folder(tmp_path / "folder_dirty")
    for folder in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        add_junk(dirty / "bottle" / folder)
    for folder in ("good", "defects/scratch", "masks/scratch"):
        add_junk(tmp_path / "folder_dirty" / folder)
    (dirty / "bottle" / "test" / ".hidden_type").mkdir()  # a hidden folder is no defect type
    write_image(dirty / "bottle" / "test" / ".hidden_type" / "000.png", rect=SQUARE_RECT)
    (dirty / ".Trash-1000" / "train").mkdir(parents=True)  # nor a category

    def tables(dm):
        dm.setup()
        return [[(s.image_path.relative_to(dm.root), s.label, s.defect_type) for s in dm.split(k).samples]
                for k in ("train", "test")]  # fmt: skip

    assert tables(MVTecADDataModule(dirty, "bottle", image_size=32)) == tables(MVTecADDataModule(clean, "bottle"))
    assert MVTecADDataModule(dirty, "bottle").categories_on_disk() == ["bottle"]
    folder = dict(normal_dir="good", abnormal_dirs=["defects/scratch"], mask_dir="masks", mask_suffix="_mask")
    assert tables(FolderDataModule(tmp_path / "folder_dirty", **folder)) == tables(
        FolderDataModule(tmp_path / "folder_clean", **folder)
    )


def test_symbolic_links_are_followed(tmp_path):
    root = write_mvtec(tmp_path / "data")
    elsewhere = write_mvtec(tmp_path / "elsewhere", "cable")
    train = root / "bottle" / "train" / "good"
    (train / "010.png").symlink_to(elsewhere / "cable" / "train" / "good" / "000.png")  # a linked image
    shutil.rmtree(root / "bottle" / "test" / "good")
    (root / "bottle" / "test" / "good").symlink_to(elsewhere / "cable" / "test" / "good")  # a linked folder
    (train / "loop").symlink_to(train)  # a folder link to itself: not an image, not descended into
    dm = MVTecADDataModule(root, "bottle", image_size=32)
    dm.setup()
    assert [s.image_path.name for s in dm.split("train").samples] == ["000.png", "001.png", "002.png", "010.png"]
    assert len([s for s in dm.split("test").samples if s.label == 0]) == 2
    assert dm.split("train")[3]["image"].shape == (3, 32, 32)


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_links_to_nothing_stop_naming_the_link(tmp_path, link):
    root = write_mvtec(tmp_path)
    train = root / "bottle" / "train" / "good"
    if link == "dangling":
        (train / "010.png").symlink_to(tmp_path / "moved_away.png")
    else:
        (train / "010.png").symlink_to(train / "011.png")
        (train / "011.png").symlink_to(train / "010.png")
    with pytest.raises(DatasetLayoutError, match=rf"image {train}/010.png is a symbolic link to nothing .*: fix or "):
        MVTecADDataModule(root, "bottle", image_size=32).setup()


def test_folder_names_with_spaces_and_non_ascii_characters(tmp_path):
    root = write_mvtec(tmp_path / "mes données 2024", "crème brûlée")
    category = root / "crème brûlée"
    for folder in ("test", "ground_truth"):
        (category / folder / "crack").rename(category / folder / "fissure à gauche")
    (category / "test" / "good" / "000.png").rename(category / "test" / "good" / "été 1.png")
    dm = MVTecADDataModule(root, "crème brûlée", image_size=32)
    assert dm.categories_on_disk() == ["crème brûlée"]
    dm.setup()
    test = dm.split("test")
    assert {s.defect_type for s in test.samples} == {"good", "fissure à gauche"}
    assert [test[i]["mask"].sum().item() for i in range(len(test))] == [64, 64, 0, 0]
    folder = write_folder(tmp_path / "dossier ñ")
    (folder / "defects" / "scratch").rename(folder / "defects" / "rayure é")
    (folder / "masks" / "scratch").rename(folder / "masks" / "rayure é")
    dm = FolderDataModule(folder, "good", "defects/rayure é", mask_dir="masks", mask_suffix="_mask", image_size=32)
    dm.setup()
    assert {s.defect_type for s in dm.split("test").samples} == {"good", "rayure é"}


@pytest.mark.parametrize("size", [(4, 4), (1, 50), (50, 1)])
@pytest.mark.parametrize("resize", ["square", "shorter_side_crop"])
def test_images_smaller_than_the_backbone_strides_are_resized_up(tmp_path, size, resize):
    """The network sees data.image_size whatever the file's size (data.image_size itself: test_configs_errors)."""
    Image.fromarray(np.full(size[::-1], 200, dtype=np.uint8)).save(tmp_path / "x.png")
    item = AnomalyDataset([Sample(tmp_path / "x.png", 0, None, "good")], build_transform(32, resize))[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)


def test_one_training_image_and_a_calibration_hold_out_stops_with_the_fix(tmp_path):
    root = write_mvtec(tmp_path)
    for extra in ("001.png", "002.png"):
        (root / "bottle" / "train" / "good" / extra).unlink()
    dm = MVTecADDataModule(root, "bottle", image_size=32, calibration_fraction=0.1)
    fix = "add normal training images or set data.calibration_fraction=0"
    with pytest.raises(
        ConfigError, match=f"data.calibration_fraction=0.1 holds out training images, but there is 1: {fix}"
    ):
        dm.setup()
    MVTecADDataModule(root, "bottle", image_size=32, calibration_fraction=0.0).setup()


@pytest.mark.parametrize("missing", ["anomalous", "normal"])
def test_metrics_of_a_missing_class_are_not_available_with_the_reason(missing):
    labels = np.zeros(4, dtype=bool) if missing == "anomalous" else np.ones(4, dtype=bool)
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[labels, 2:4, 2:4] = True
    metrics = AnomalyMetrics()
    metrics.update(torch.rand(4), torch.from_numpy(labels), torch.rand(4, 8, 8), torch.from_numpy(masks))
    with pytest.warns(UserWarning, match="image_auroc, image_f1_max, image_ap not available: "):
        values = metrics.compute()
    assert math.isnan(values["image_auroc"]) and math.isnan(values["image_f1_max"]) and values["num_images"] == 4
    if missing == "anomalous":
        reason = "none of the 4 scored images is anomalous: the metric needs both normal and anomalous images"
        assert all(math.isnan(values[k]) for k in ("pixel_auroc", "pixel_f1_max", "pixel_aupro", "pixel_ap", "mad"))
        assert metrics.not_available["pixel_aupro"].startswith("none of the scored pixels is anomalous (the masks")
    else:
        reason = "all 4 scored images are anomalous: the metric needs both normal and anomalous images"
        assert 0 <= values["pixel_auroc"] <= 1 and 0 <= values["pixel_aupro"] <= 1  # the masks have normal pixels
        assert set(metrics.not_available) == {"image_auroc", "image_f1_max", "image_ap", "mad"}
    assert metrics.not_available["image_auroc"] == reason


NULL_METRICS = dict.fromkeys(METRICS)
SUMMARY_CASES = {  # category -> metrics as results.json holds them (null: not available)
    "nothing": {"widget": NULL_METRICS},
    "no normal images": {
        "widget": NULL_METRICS | {"pixel_auroc": 0.9, "pixel_f1_max": 0.5, "pixel_aupro": 0.8, "pixel_ap": 0.6}
    },
    "one of two": {"bottle": dict.fromkeys(NULL_METRICS, 0.75), "widget": NULL_METRICS},
}


@pytest.mark.parametrize("case", list(SUMMARY_CASES))
def test_summary_of_metrics_that_are_not_available_draws_what_there_is(tmp_path, monkeypatch, case):
    """Null metrics (a test split without anomalous or normal images): the summary figure is written and says what
    is missing, as do the tables."""
    from fod_lightning.reporting import plots, summarize_folder

    figures, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), save(fig, path)))
    categories = SUMMARY_CASES[case]
    run_section = {"status": "done", "seed": 0, "config": {"seed": 0}, "overrides": []}
    results = {"benchmark": "MVTec AD", "categories": categories, "run": run_section}
    (tmp_path / "results.json").write_text(json.dumps(results))
    summary = summarize_folder(tmp_path)
    assert summary.figure == tmp_path / "summary.png" and summary.figure.is_file()
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "summary.csv").is_file()
    (fig,) = figures
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]
    if case == "nothing":
        assert any(t.startswith("no metric is available for widget:") for t in texts)
    elif case == "no normal images":
        assert [ax.get_ylabel() for ax in fig.axes] == ["pixel_auroc", "pixel_aupro", "pixel_f1_max", "pixel_ap"]
        missing = "not available for any category: image_auroc, image_f1_max, image_ap, mad (see not_available in"
        assert missing in fig.axes[0].get_title()
    else:
        assert [ax.get_ylabel() for ax in fig.axes] == list(METRICS)
        assert [t.get_text() for t in fig.axes[0].texts] == ["0.750", "n/a", "n/a"]  # bottle, widget, mean


def test_run_completes_on_a_category_without_anomalous_test_images(make_config, tmp_path):
    """Also: a root with spaces and non-ASCII characters (quoted for Hydra's override grammar), and a training set
    smaller than the batch size (one short batch)."""
    from fod_lightning.run import run

    root = write_mvtec(tmp_path / "my data é", "bottle")
    write_mvtec(root, "only good")
    shutil.rmtree(root / "only good" / "test" / "crack")
    shutil.rmtree(root / "only good" / "ground_truth")
    cfg = make_config("data=mvtec", f"data.root='{root}'", "data.category=all", "data.batch_size=16",
                      "data.num_workers=0", textures=False)  # fmt: skip
    match = "image_auroc, image_f1_max, image_ap not available: none of the 2 scored images"
    with pytest.warns(UserWarning, match=match):
        results = run(cfg)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["run"]["status"] == "done" and list(saved["categories"]) == ["bottle", "only good"]
    good = saved["categories"]["only good"]
    assert good["num_images"] == 2 and good["epochs"] == 1
    for metric in ("image_auroc", "image_f1_max", "pixel_auroc", "pixel_f1_max", "pixel_aupro"):
        assert good[metric] is None and math.isnan(results["categories"]["only good"][metric]), metric  # JSON null
        assert 0.0 <= saved["categories"]["bottle"][metric] <= 1.0
        assert saved["mean"][metric] == saved["categories"]["bottle"][metric]  # the mean covers bottle only
    assert "none of the 2 scored images" in good["not_available"]["image_auroc"]
    assert saved["mean"]["covers"]["image_auroc"] == 1 and saved["mean"]["num_categories"] == 2
    assert results["categories"]["bottle"]["num_images"] == 4
