"""MVTec AD 2 submissions on a tiny layout: a full one passes the check and packs; each corruption is one clear line."""

import tarfile

import numpy as np
import pytest
import tifffile
from PIL import Image

from fod_lightning.deploy.submission import (
    check_submission,
    dataset_images,
    pack_submission,
    prepare_submission,
    write_submission_image,
)
from fod_lightning.errors import UserError
from helpers.ad2_layout import AD2_SIZES, write_ad2

OBJECTS = tuple(AD2_SIZES)
SPLITS = ("test_private", "test_private_mixed")
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_ad2(tmp_path_factory.mktemp("ad2"), n_train=1, n_val=1, n_public_good=1, n_public_bad=1)


def brightness_map(path) -> np.ndarray:
    """A stand-in model: the image's grey level in [0, 1] (the bright defects score high), float32 (H, W)."""
    return (np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255).astype(np.float32)


@pytest.fixture
def submission(tmp_path, dataset):
    folder = prepare_submission(tmp_path / "my_submission")
    for obj in OBJECTS:
        for split in SPLITS:
            for stem, path in dataset_images(dataset, obj, split).items():
                write_submission_image(folder, obj, split, stem, brightness_map(path), THRESHOLD)
    return folder


def problems_of(folder, dataset) -> list[str]:
    problems = check_submission(folder, dataset, OBJECTS, raise_error=False)
    assert all("\n" not in p for p in problems)
    return problems


def test_full_submission_passes_and_packs(submission, dataset):
    assert check_submission(submission, dataset, OBJECTS) == []
    archive = pack_submission(submission, dataset, OBJECTS)
    assert archive == submission.parent / "my_submission.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        files = {m.name for m in tar.getmembers() if m.isfile()}
        tiff = tar.extractfile("my_submission/anomaly_images/can/test_private/001_regular.tiff").read()
    expected = {
        f"my_submission/{top}/{obj}/{split}/{i:03d}_{suffix}.{ext}"
        for top, ext in (("anomaly_images", "tiff"), ("anomaly_images_thresholded", "png"))
        for obj in OBJECTS
        for split, suffix in (("test_private", "regular"), ("test_private_mixed", "mixed"))
        for i in range(3)
    }
    assert files == expected
    assert tiff == (submission / "anomaly_images/can/test_private/001_regular.tiff").read_bytes()
    assert not list(submission.parent.glob(".*.tmp"))  # the atomic write left nothing behind
    with pytest.raises(UserError, match="exists: move or remove it"):
        pack_submission(submission, dataset, OBJECTS)


def test_written_files_are_what_the_server_reads(submission, dataset):
    image = dataset / "vial" / "test_private" / "001_regular.png"  # odd private indices hold a defect
    expected = brightness_map(image)
    tiff = tifffile.imread(submission / "anomaly_images/vial/test_private/001_regular.tiff")
    png = np.asarray(Image.open(submission / "anomaly_images_thresholded/vial/test_private/001_regular.png"))
    assert tiff.dtype == np.float16 and tiff.shape == AD2_SIZES["vial"] == png.shape
    np.testing.assert_array_equal(tiff, expected.astype(np.float16))
    assert png.dtype == np.uint8 and set(np.unique(png)) == {0, 255}  # the image holds a bright defect
    np.testing.assert_array_equal(png == 255, expected >= THRESHOLD)


def test_test_public_stems_keep_their_folder(tmp_path, dataset):
    folder = prepare_submission(tmp_path / "public")
    for obj in OBJECTS:
        for stem, path in dataset_images(dataset, obj, "test_public").items():
            write_submission_image(folder, obj, "test_public", stem, brightness_map(path), THRESHOLD)
    assert (folder / "anomaly_images/can/test_public/bad/000_regular.tiff").is_file()
    assert check_submission(folder, dataset, OBJECTS, splits=("test_public",)) == []


def corrupt_missing(folder):
    (folder / "anomaly_images/can/test_private/002_regular.tiff").unlink()


def corrupt_extra(folder):
    (folder / "anomaly_images_thresholded/vial/test_private_mixed/003_mixed.png").write_bytes(b"")


def corrupt_size(folder):
    h, w = AD2_SIZES["can"]
    tifffile.imwrite(folder / "anomaly_images/can/test_private_mixed/000_mixed.tiff", np.zeros((h, w + 1), np.float16))


def corrupt_float32(folder):
    tifffile.imwrite(
        folder / "anomaly_images/vial/test_private/001_regular.tiff", np.zeros(AD2_SIZES["vial"], np.float32)
    )


def corrupt_nan(folder):
    path = folder / "anomaly_images/can/test_private/000_regular.tiff"
    array = tifffile.imread(path)
    array[3, 4] = np.nan
    tifffile.imwrite(path, array)


def corrupt_png_128(folder):
    path = folder / "anomaly_images_thresholded/can/test_private/001_regular.png"
    array = np.asarray(Image.open(path)).copy()
    array[0, 0] = 128
    Image.fromarray(array).save(path)


def corrupt_rgb_png(folder):
    path = folder / "anomaly_images_thresholded/vial/test_private/000_regular.png"
    Image.open(path).convert("RGB").save(path)


def corrupt_missing_top(folder):
    for path in sorted((folder / "anomaly_images_thresholded").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (folder / "anomaly_images_thresholded").rmdir()


def corrupt_extra_split(folder):
    (folder / "anomaly_images/can/test_public").mkdir()


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (corrupt_missing, "anomaly_images/can/test_private: 1 file(s) missing: 002_regular.tiff"),
        (corrupt_extra, "anomaly_images_thresholded/vial/test_private_mixed: 1 unexpected file(s): 003_mixed.png"),
        (corrupt_size, "anomaly_images/can/test_private_mixed/000_mixed.tiff: 45x62 (H x W) but "),
        (corrupt_float32, "anomaly_images/vial/test_private/001_regular.tiff: float32, the server needs float16"),
        (corrupt_nan, "anomaly_images/can/test_private/000_regular.tiff: 1 NaN or inf value(s)"),
        (corrupt_png_128, "anomaly_images_thresholded/can/test_private/001_regular.png: values 128 besides 0 and 255"),
        (corrupt_rgb_png, "anomaly_images_thresholded/vial/test_private/000_regular.png: shape (38, 27, 3)"),
        (corrupt_missing_top, "the submission folder: missing folder(s) anomaly_images_thresholded"),
        (corrupt_extra_split, "anomaly_images/can: unexpected test_public"),
    ],
)
def test_each_corruption_is_one_clear_line(submission, dataset, corrupt, expected):
    corrupt(submission)
    problems = problems_of(submission, dataset)
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    with pytest.raises(UserError) as raised:
        pack_submission(submission, dataset, OBJECTS)
    assert str(raised.value) == f"submission {submission} would be refused: {problems[0]}"
    assert not (submission.parent / "my_submission.tar.gz").exists()


def test_several_problems_raise_one_line_naming_the_first(submission, dataset):
    corrupt_missing(submission)
    corrupt_nan(submission)
    with pytest.raises(UserError, match=r"would be refused: .*missing: 002_regular.tiff .* \(and 1 more: ") as raised:
        check_submission(submission, dataset, OBJECTS)
    assert "\n" not in str(raised.value)


def test_non_empty_folder_and_existing_files_are_refused(submission, tmp_path, dataset):
    with pytest.raises(UserError, match=f"submission folder {submission} is not empty: choose a new folder"):
        prepare_submission(submission)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="is not empty"):
        prepare_submission(tmp_path / "other")
    with pytest.raises(UserError, match="001_regular.tiff exists: write each image once"):
        write_submission_image(submission, "can", "test_private", "001_regular", np.zeros((45, 61)), 0.5)


@pytest.mark.parametrize(
    "anomaly_map, message",
    [
        (np.zeros((1, 45, 61)), r"shape \(1, 45, 61\): pass one \(H, W\) map"),
        (np.full((45, 61), np.nan), "holds NaN or inf"),
        (np.full((45, 61), 1e5), "beyond float16's 65504"),
    ],
)
def test_writer_refuses_maps_the_server_cannot_take(tmp_path, anomaly_map, message):
    with pytest.raises(UserError, match=message):
        write_submission_image(tmp_path, "can", "test_private", "000_regular", anomaly_map, 0.5)
    with pytest.raises(UserError, match="without its extension"):
        write_submission_image(tmp_path, "can", "test_private", "000_regular.png", np.zeros((45, 61)), 0.5)
    assert not any(tmp_path.rglob("*.*"))


def test_wrong_dataset_root_is_one_line(submission, tmp_path):
    with pytest.raises(UserError, match="no images in .*can/test_private: point dataset_root at the MVTec AD 2"):
        check_submission(submission, tmp_path / "nowhere", OBJECTS)


def test_layout_writer_is_deterministic_with_masks_on_the_bright_blobs(tmp_path, dataset):
    again = write_ad2(tmp_path / "again", n_train=1, n_val=1, n_public_good=1, n_public_bad=1)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.png"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert all((dataset / f).read_bytes() == (again / f).read_bytes() for f in files)
    for obj, (h, w) in AD2_SIZES.items():
        image = np.asarray(Image.open(dataset / obj / "test_public/bad/000_regular.png"))
        mask = np.asarray(Image.open(dataset / obj / "test_public/ground_truth/bad/000_regular_mask.png"))
        assert image.shape == (h, w, 3) and mask.shape == (h, w) and set(np.unique(mask)) == {0, 255}
        assert image[mask == 255].min() >= 230 > image[mask == 0].max()
    names = {p.name for p in (dataset / "can/test_private_mixed").iterdir()}
    assert names == {"000_mixed.png", "001_mixed.png", "002_mixed.png"}
