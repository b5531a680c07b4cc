"""The embedded benchmark: exact masks, deterministic builds, MVTec AD layout."""

import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from fod_lightning.data.defects import DEFECT_FAMILIES, contamination
from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.data.textures import TexturesDataModule, _photo, ensure_textures
from fod_lightning.errors import ConfigError

SMALL = dict(n_train=3, n_test_good=2, n_test_per_defect=2, crop_size=64)


@pytest.mark.parametrize("family", sorted(DEFECT_FAMILIES))
def test_defect_masks_are_exactly_the_changed_pixels(family):
    rng = np.random.default_rng(3)
    image = _photo("brick")[:128, :128]
    for _ in range(5):
        if DEFECT_FAMILIES[family] is contamination:
            out, mask = contamination(image, rng, _photo("grass")[:128, :128])
        else:
            out, mask = DEFECT_FAMILIES[family](image, rng)
        changed = np.any(out != image, axis=-1)
        assert mask.dtype == bool and mask.any()
        assert not (changed & ~mask).any(), "a pixel outside the mask changed"
        # a pasted foreign pixel can equal the original by chance; the others always differ
        assert changed[mask].mean() >= (0.9 if family == "contamination" else 1.0)


def tree_digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_build_is_deterministic_and_cached(tmp_path):
    a = ensure_textures(tmp_path / "a", seed=1, **SMALL)
    b = ensure_textures(tmp_path / "b", seed=1, **SMALL)
    c = ensure_textures(tmp_path / "c", seed=2, **SMALL)
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)
    stamp = (a / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns
    assert ensure_textures(tmp_path / "a", seed=1, **SMALL) == a  # cached: nothing rewritten
    assert (a / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns == stamp
    other = ensure_textures(tmp_path / "a", seed=2, **SMALL)  # another spec: another folder, this one untouched
    assert other != a and tree_digest(other) == tree_digest(c)
    assert (a / "brick" / "train" / "good" / "000.png").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_read_through_the_mvtec_loader(tmp_path):
    dm = TexturesDataModule(str(tmp_path / "tex"), "gravel", image_size=32, eval_batch_size=4, **SMALL)
    dm.setup()
    assert len(dm.split("train")) == 3
    test = dm.split("test")
    assert len(test) == 2 + 3 * 2
    assert sorted({s.defect_type for s in test.samples}) == ["contamination", "good", "scratch", "stain"]
    assert all(s.label == (s.defect_type != "good") for s in test.samples)
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (4, 3, 32, 32) and batch.mask.shape == (4, 32, 32)
    for i in range(len(batch)):
        assert bool(batch.mask[i].any()) == bool(batch.label[i])


def test_other_photos_make_another_benchmark_of_their_categories(tmp_path):
    default = ensure_textures(tmp_path / "tex", **SMALL)
    other = ensure_textures(tmp_path / "tex", photos=("moon", "hubble_deep_field"), **SMALL)
    assert other != default and sorted(p.name for p in other.iterdir() if p.is_dir()) == ["hubble_deep_field", "moon"]
    moon = _photo("moon")
    crop = np.asarray(Image.open(other / "moon" / "train" / "good" / "000.png"), dtype=np.float64) / 255
    assert crop.shape == (64, 64, 3) and np.allclose(crop[..., 0], crop[..., 2])  # the grey moon, as RGB
    for patch in (crop[..., 0], crop[:, ::-1, 0]):  # a crop, flipped or not, of the photo
        found = cv2.matchTemplate(moon[..., 0].astype(np.float32), np.ascontiguousarray(patch, np.float32),
                                  cv2.TM_SQDIFF)  # fmt: skip
        y, x = np.unravel_index(found.argmin(), found.shape)
        if np.abs(moon[y : y + 64, x : x + 64, 0] - patch).max() <= 1 / 255:
            break
    else:
        pytest.fail("the moon category's training image is not a crop of the moon photo")


def test_all_runs_the_photos_chosen(make_config):
    from fod_lightning.engine.categories import categories_of

    categories = categories_of(make_config("data.photos=[moon,immunohistochemistry]", "data.category=all"))
    assert categories.names == ["moon", "immunohistochemistry"] and not categories.missing and not categories.custom


@pytest.mark.parametrize(
    ("photos", "message"),
    [(["brick", "coffee"], r"data.photos names \['coffee'\], not a texture photo of scikit-image: use some of brick"),
     (["moon"], r"data.photos=\['moon'\] needs at least two distinct photos"),
     (["moon", "moon"], r"data.photos=\['moon', 'moon'\] needs at least two distinct photos")],
)  # fmt: skip
def test_bad_photos_are_refused_with_the_key(tmp_path, photos, message):
    with pytest.raises(ConfigError, match=message):
        TexturesDataModule(str(tmp_path), "brick", photos=photos)


def test_a_category_outside_the_photos_is_refused_with_the_fix(tmp_path):
    dm = TexturesDataModule(str(tmp_path), "moon", **SMALL)
    with pytest.raises(DatasetLayoutError, match=r"data.category=moon is not among data.photos=\['brick', 'grass', "
                                                 r"'gravel'\]: add it to data.photos"):  # fmt: skip
        dm.setup()
