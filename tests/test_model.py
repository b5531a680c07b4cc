"""FOD model: state-dict layout, shapes, position code, reference features, scoring."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from fod_lightning.models.embedding import sincos_position_code
from fod_lightning.models.fod import FOD, FODStage
from fod_lightning.models.losses import patch_discrepancy, reconstruction_error
from fod_lightning.models.reference import ReferenceFeatures, mean_feature_maps
from fod_lightning.models.smoothing import gaussian_blur


class FakeBackbone(torch.nn.Module):
    """Deterministic stride-8/16 features from average pooling, so scoring can be checked by hand."""

    channels = (3, 3)

    def forward(self, images):
        return [F.avg_pool2d(images, 8), F.avg_pool2d(images, 16)]


def tiny_fod(**kwargs):
    torch.manual_seed(0)
    return FOD(FakeBackbone(), d_models=(8, 16), n_heads=2, depth=2, **kwargs)


def test_stage_state_dict_matches_the_authors_layout():
    stage = FODStage(512, 256, 8, 3, 4, 0.0, True, True, False)
    state = stage.state_dict()
    assert len(state) == 92
    assert sum(v.numel() for v in state.values()) == 3578208
    assert state["embedding.project_embedding.project.weight"].shape == (256, 512, 1)
    assert state["encoder.encode_layers.2.cross_attention.sigma_projection.weight"].shape == (16, 256)
    assert state["encoder.encode_layers.0.ffn.fc1.weight"].shape == (1024, 256)
    assert state["projection.weight"].shape == (512, 256)
    big = FODStage(1024, 512, 8, 3, 4, 0.0, True, True, False)
    assert sum(v.numel() for v in big.state_dict().values()) == 14234208


def test_position_code_matches_the_authors_formula():
    d, h, w = 8, 3, 5
    code = sincos_position_code(d, h, w).view(h, w, d)
    half = d // 2
    for y in range(h):
        for x in range(w):
            for k in range(half // 2):
                freq = math.exp(-(2 * k) * math.log(1e4) / half)
                assert code[y, x, 2 * k].item() == pytest.approx(math.sin(x * freq), abs=1e-6)
                assert code[y, x, 2 * k + 1].item() == pytest.approx(math.cos(x * freq), abs=1e-6)
                assert code[y, x, half + 2 * k].item() == pytest.approx(math.sin(y * freq), abs=1e-6)
                assert code[y, x, half + 2 * k + 1].item() == pytest.approx(math.cos(y * freq), abs=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):  # a ConfigError
        sincos_position_code(6, 2, 2)


def test_reference_is_the_mean_pooled_map_and_broadcasts_over_batches():
    model = tiny_fod()
    images = [torch.randn(3, 3, 32, 48), torch.randn(2, 3, 32, 48)]
    maps = mean_feature_maps(images, model.pooled_features)
    expected = torch.cat([model.pooled_features(b)[0] for b in images]).mean(0)
    torch.testing.assert_close(maps[0], expected)
    model.reference.set(maps)
    outs = model(torch.randn(5, 3, 32, 48))  # batch 5, not the reference count
    assert outs[0].grid == (4, 6) and outs[1].grid == (2, 3)
    assert outs[0].reconstruction.shape == (5, 24, 3)
    assert outs[0].inter.correlations[0].shape == (5, 2, 24, 24)
    assert len(outs[1].intra.targets) == 2


def test_reference_buffers_round_trip_through_a_state_dict():
    model = tiny_fod()
    model.reference.set(mean_feature_maps([torch.randn(2, 3, 32, 32)], model.pooled_features))
    fresh = tiny_fod()
    assert not fresh.reference.is_set
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.reference.get(1), model.reference.get(1))
    with pytest.raises(RuntimeError, match="reference features are not set"):
        ReferenceFeatures(1).tokens(0)


def test_image_size_mismatch_with_reference_is_explained():
    model = tiny_fod()
    model.reference.set(mean_feature_maps([torch.randn(1, 3, 32, 32)], model.pooled_features))
    with pytest.raises(ValueError, match="fitted at another image size"):
        model(torch.randn(1, 3, 64, 64))


def test_predict_follows_the_authors_scoring():
    model = tiny_fod().eval()
    model.reference.set(mean_feature_maps([torch.randn(2, 3, 32, 32)], model.pooled_features))
    images = torch.randn(2, 3, 32, 32)
    pred = model.predict(images)
    maps = []
    for out in model(images):
        s_rec = reconstruction_error(out.reconstruction, out.tokens)
        p = torch.softmax(-patch_discrepancy(out.inter), dim=-1)
        score = s_rec * (p.max(dim=-1, keepdim=True).values - p)
        maps.append(F.interpolate(score.view(2, 1, *out.grid), size=(32, 32), mode="bilinear", align_corners=True))
    expected = torch.cat(maps, 1).mean(1)
    torch.testing.assert_close(pred.anomaly_map, expected)
    for i in range(2):
        blurred = scipy.ndimage.gaussian_filter(expected[i].detach().double().numpy(), sigma=4)
        assert pred.image_score[i].item() == pytest.approx(blurred.max(), rel=1e-5)


@pytest.mark.parametrize(("with_intra", "with_inter", "score"), [(True, False, "intra"), (False, False, "rec")])
def test_ablations_pick_the_authors_score(with_intra, with_inter, score):
    model = tiny_fod(with_intra=with_intra, with_inter=with_inter)
    assert model.score == score
    assert hasattr(model.stages[0], "ref_embedding") == with_inter
    model.reference.set(mean_feature_maps([torch.randn(1, 3, 32, 32)], model.pooled_features))
    out = model(torch.randn(1, 3, 32, 32))[0]
    assert bool(out.intra.correlations) == with_intra and not out.inter.correlations
    assert model.predict(torch.randn(1, 3, 32, 32)).anomaly_map.shape == (1, 32, 32)


def test_score_needs_its_branch():
    with pytest.raises(ValueError, match="needs the inter branch"):
        tiny_fod(with_inter=False, score="inter")


@pytest.mark.parametrize("shape", [(2, 40, 40), (1, 33, 50), (1, 6, 5)])
def test_gaussian_blur_matches_scipy(shape):
    maps = torch.from_numpy(np.random.default_rng(0).random(shape))
    ours = gaussian_blur(maps, 4.0)
    for i in range(shape[0]):
        np.testing.assert_allclose(ours[i].numpy(), scipy.ndimage.gaussian_filter(maps[i].numpy(), 4.0), atol=1e-12)
