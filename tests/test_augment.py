"""Optional training augmentations: off by default, masks follow the image, reference unaugmented."""

import albumentations as A
import numpy as np

from fod_lightning.data.textures import TexturesDataModule
from fod_lightning.data.transforms import build_transform


def test_masks_follow_the_augmented_geometry():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[10:30, 5:20] = 255
    mask = (image[..., 0] > 0).astype(np.uint8)
    transform = build_transform(64, augment=True)
    flipped = 0
    for seed in range(20):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        bright = out["image"][0].numpy() > 0.5  # normalised 255 is about 2.2, 0 is about -2.1
        m = out["mask"].numpy().astype(bool)
        assert (bright & m).sum() / (bright | m).sum() > 0.8
        flipped += int(m[:, 40:].any())
    assert 0 < flipped < 20  # some flips, not all


def test_augmentation_is_off_by_default_and_never_reaches_the_reference(tmp_path):
    kwargs = dict(n_train=3, n_test_good=1, n_test_per_defect=1, crop_size=64, image_size=32)
    plain = TexturesDataModule(str(tmp_path / "t"), "brick", **kwargs)
    plain.setup()
    assert not any(isinstance(t, A.HorizontalFlip) for t in plain.split("train").transform)
    augmented = TexturesDataModule(str(tmp_path / "t"), "brick", augment=True, **kwargs)
    augmented.setup()
    assert any(isinstance(t, A.HorizontalFlip) for t in augmented.split("train").transform)
    assert not any(isinstance(t, A.HorizontalFlip) for t in augmented.split("reference").transform)
    assert [s.image_path for s in augmented.split("reference").samples] == [
        s.image_path for s in augmented.split("train").samples
    ]
