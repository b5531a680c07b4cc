"""The frozen timm backbone: offline ImageNet weights, stride-based stages, weight sources."""

import pytest
import skimage.data
import torch
import torch.nn.functional as F

from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import BackboneWeightsError, FeatureExtractor, lite0_package_file


@pytest.fixture(scope="module")
def lite0():
    return FeatureExtractor("tf_efficientnet_lite0", weights="efficientnet_lite0_package")


def test_lite0_package_weights_classify_the_cat_photo_as_a_cat(lite0):
    import timm

    from fod_lightning.models.backbone import load_into, read_state_dict

    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_into(classifier, read_state_dict(lite0_package_file()), "package")
    classifier.eval()
    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float()[None] / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    image = (image - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[
        :, None, None
    ]
    with torch.no_grad():
        top = classifier(image).softmax(-1).topk(3).indices[0].tolist()
    assert all(281 <= c <= 285 for c in top), top  # ImageNet domestic cat classes
    # The feature extractor got the same weights as the classifier's stem.
    torch.testing.assert_close(lite0.model.conv_stem.weight, classifier.conv_stem.weight)


def test_stages_are_chosen_by_stride_and_any_size_divisible_by_16_works(lite0):
    assert lite0.channels == (40, 112)
    maps = lite0(torch.randn(2, 3, 96, 160))
    assert [tuple(m.shape) for m in maps] == [(2, 40, 12, 20), (2, 112, 6, 10)]
    with pytest.raises(ValueError, match="divisible by 16"):
        lite0(torch.randn(1, 3, 100, 96))


def test_backbone_is_frozen_and_stays_in_eval_mode(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    parent = torch.nn.Sequential(lite0)
    parent.train()
    assert not lite0.training and not lite0.model.training


def test_hub_failure_is_a_clear_error_not_random_weights(monkeypatch):
    import timm

    real_create = timm.create_model

    def offline_create(*args, pretrained=False, **kwargs):
        if pretrained:
            raise ConnectionError("no internet")
        return real_create(*args, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline_create)
    with pytest.raises(BackboneWeightsError, match="checkpoint_path=FILE.*weights=random"):
        FeatureExtractor("resnet18", weights="hub")


def test_an_unknown_architecture_is_a_config_error_not_timms_exception():
    with pytest.raises(ConfigError, match=r"^model.net.backbone.name='resnet_nope' is not a timm model"):
        FeatureExtractor("resnet_nope", weights="random")


def test_random_weights_only_when_asked():
    assert FeatureExtractor("resnet18", weights="random").weights_source == "random"
    with pytest.raises(ValueError, match="weights='imagenet' is unknown"):
        FeatureExtractor("resnet18", weights="imagenet")


def test_local_checkpoint_path_loads_and_foreign_checkpoints_fail(tmp_path, lite0):
    import timm

    full = timm.create_model("resnet18", pretrained=False)
    torch.save({"state_dict": full.state_dict()}, tmp_path / "r18.pth")
    backbone = FeatureExtractor("resnet18", checkpoint_path=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(backbone.model.layer2[0].conv1.weight, full.layer2[0].conv1.weight)
    with pytest.raises(BackboneWeightsError, match="does not fit the backbone"):
        FeatureExtractor("resnet18", checkpoint_path=str(lite0_package_file()))
    with pytest.raises(BackboneWeightsError, match="does not exist"):
        FeatureExtractor("resnet18", checkpoint_path=str(tmp_path / "missing.pth"))


def test_checkpoints_are_loaded_without_executing_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(BackboneWeightsError, match="not a plain tensor checkpoint"):
        FeatureExtractor("resnet18", checkpoint_path=str(tmp_path / "evil.pth"))
