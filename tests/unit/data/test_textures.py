"""The embedded benchmark: exact masks, deterministic builds, MVTec AD layout."""

import hashlib

import numpy as np
import pytest

from fod_lightning.data.defects import DEFECT_FAMILIES, contamination
from fod_lightning.data.textures import TexturesDataModule, _photo, ensure_textures

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
