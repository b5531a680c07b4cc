"""Optional training augmentations: off by default, masks follow the image, reference unaugmented."""

import albumentations as A
import numpy as np
import pytest

from fod_lightning.data.textures import TexturesDataModule
from fod_lightning.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform


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


GEOMETRIES = [
    (32, (70, 100), "shorter_side_crop"),
    (32, (64, 94), "shorter_side_crop"),  # crop offset 7.5 rounds to 8 (torchvision), not 7
    (48, (101, 77), "shorter_side_crop"),
    (32, (64, 90), "square"),
]


@pytest.mark.parametrize(("size", "shape", "resize"), GEOMETRIES)
def test_geometry_is_pixel_identical_to_the_authors_torchvision_pipeline(size, shape, resize):
    import torch
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(size)
    image = (rng.random((*shape, 3)) * 255).astype(np.uint8)
    mask = (rng.random(shape) > 0.7).astype(np.uint8)
    target = (size, size) if resize == "square" else size
    authors_image = T.Compose([T.Resize(target, T.InterpolationMode.LANCZOS), T.CenterCrop(size), T.ToTensor(),
                               T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])  # fmt: skip
    authors_mask = T.Compose([T.Resize(target, T.InterpolationMode.NEAREST), T.CenterCrop(size), T.ToTensor()])
    ours = build_transform(size, resize)(image=image, mask=mask)
    torch.testing.assert_close(ours["image"], authors_image(Image.fromarray(image)), atol=1e-5, rtol=0)
    expected_mask = (authors_mask(Image.fromarray(mask * 255))[0] > 0).to(torch.uint8)
    assert torch.equal(torch.as_tensor(ours["mask"], dtype=torch.uint8), expected_mask)
