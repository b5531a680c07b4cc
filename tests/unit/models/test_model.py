"""FOD model: state-dict layout, shapes, position code, reference features, scoring."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from fod_lightning.errors import ConfigError
from fod_lightning.models.fod.embedding import sincos_position_code
from fod_lightning.models.fod.memory import PatchMemory
from fod_lightning.models.fod.model import FOD, FODStage
from fod_lightning.models.fod.reference import ReferenceFeatures, mean_feature_maps
from fod_lightning.models.fod.scoring import anomaly_map
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
    assert outs[0].inter.layers[0].discrepancy.shape == (5, 24)
    assert len(outs[1].intra.layers) == 2


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


def inter_maps(model, images):
    """Per stage, the materialised (C, T) of every cross-attention layer, from the inputs each layer saw."""
    calls = []
    hooks = [
        layer.cross_attention.register_forward_hook(lambda m, args, out, i=i: calls.append((i, m, args)))
        for i, stage in enumerate(model.stages)
        for layer in stage.encoder.encode_layers
    ]
    outs = model(images)
    for hook in hooks:
        hook.remove()
    maps = [[] for _ in outs]
    for i, module, (query, key_value, _) in calls:
        maps[i].append(module.correlation_maps(query, key_value, outs[i].grid))
    return outs, maps


def numpy_patch_score(out, maps, b):
    """Reference section 5 for image b, written out in numpy float64 from the raw stage output and the
    materialised correlations and targets ``maps`` [(C, T) per layer]."""
    x = out.tokens[b].detach().double().numpy()
    x_hat = out.reconstruction[b].detach().double().numpy()
    cos = (x * x_hat).sum(-1) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(x_hat, axis=-1), 1e-8)
    s_rec = ((x - x_hat) ** 2).mean(-1) + 1 - cos
    d = 0
    for c, t in maps:
        c, t = c[b].detach().double().numpy(), t[b].detach().double().numpy()  # (H, L, S)
        kl_ct = (c * (np.log(c + 1e-4) - np.log(t + 1e-4))).sum(-1).mean(0)
        kl_tc = (t * (np.log(t + 1e-4) - np.log(c + 1e-4))).sum(-1).mean(0)
        d = d + (kl_ct + kl_tc) / len(maps)
    p = np.exp(-d - (-d).max())
    p = p / p.sum()  # softmax over the image's patches
    return s_rec * (p.max() - p)


def bilinear_align_corners(grid_values, size):
    """Bilinear upsampling with align_corners=True, by hand."""
    h, w = grid_values.shape
    ys, xs = np.linspace(0, h - 1, size), np.linspace(0, w - 1, size)
    out = np.zeros((size, size))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            y0, x0 = min(int(y), h - 2), min(int(x), w - 2)
            fy, fx = y - y0, x - x0
            out[i, j] = ((1 - fy) * (1 - fx) * grid_values[y0, x0] + (1 - fy) * fx * grid_values[y0, x0 + 1]
                         + fy * (1 - fx) * grid_values[y0 + 1, x0] + fy * fx * grid_values[y0 + 1, x0 + 1])  # fmt: skip
    return out


def test_predict_follows_the_authors_scoring():
    model = tiny_fod().eval()
    model.reference.set(mean_feature_maps([torch.randn(2, 3, 32, 32)], model.pooled_features))
    images = torch.randn(2, 3, 32, 32)
    pred = model.predict(images)
    with torch.no_grad():
        outs, layer_maps = inter_maps(model, images)
    for b in range(2):
        maps = [
            bilinear_align_corners(numpy_patch_score(o, m, b).reshape(o.grid), 32) for o, m in zip(outs, layer_maps)
        ]
        expected = np.mean(maps, axis=0)
        np.testing.assert_allclose(pred.anomaly_map[b].numpy(), expected, rtol=1e-4, atol=1e-7)
        blurred = scipy.ndimage.gaussian_filter(expected, sigma=4)
        assert pred.image_score[b].item() == pytest.approx(blurred.max(), rel=1e-4)


@pytest.mark.parametrize(("with_intra", "with_inter", "score"), [(True, False, "intra"), (False, False, "rec")])
def test_ablations_pick_the_authors_score(with_intra, with_inter, score):
    model = tiny_fod(with_intra=with_intra, with_inter=with_inter)
    assert model.score == score
    assert hasattr(model.stages[0], "ref_embedding") == with_inter
    model.reference.set(mean_feature_maps([torch.randn(1, 3, 32, 32)], model.pooled_features))
    out = model(torch.randn(1, 3, 32, 32))[0]
    assert bool(out.intra.layers) == with_intra and not out.inter.layers
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


def test_a_float64_model_scores_in_float64_as_the_authors_arithmetic():
    """No cast to float32 on the way: a float64 model's maps and scores equal the authors' procedure run in float64
    (bench/baseline.py) to rounding, and are float64."""
    from fod_lightning.bench.baseline import score as authors_score

    model = tiny_fod().double().eval()
    reference = mean_feature_maps([torch.randn(2, 3, 32, 32, dtype=torch.float64)], model.pooled_features)
    model.reference.set(reference)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        scores, maps = model.score_images(images)
    assert scores.dtype == maps.dtype == torch.float64
    for b in range(2):
        expected_map, expected_score = authors_score(model, images[b : b + 1])
        np.testing.assert_allclose(maps[b].numpy(), expected_map[0], rtol=1e-12, atol=1e-15)
        assert scores[b].item() == pytest.approx(expected_score[0], rel=1e-12)


def test_the_patch_memory_is_off_by_default_and_mixes_scores_by_a_product_of_powers():
    plain = tiny_fod().eval()
    assert plain.memory is None and not any(k.startswith("memory.") for k in plain.state_dict())
    reference = mean_feature_maps([torch.randn(4, 3, 32, 32)], plain.pooled_features)
    plain.reference.set(reference)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fod_scores, fod_maps = plain.score_images(images)
        train_maps = plain.pooled_features(torch.randn(3, 3, 32, 32))
    for weight in (0.5, 1.0):
        mixed = tiny_fod(memory_weight=weight).eval()
        mixed.load_state_dict(plain.state_dict(), strict=False)  # the same transformer and reference
        mixed.memory.set(train_maps)
        assert mixed.memory.stage0.shape == (3 * 4 * 4, 3) and mixed.memory.stage1.shape == (3 * 2 * 2, 3)
        with torch.no_grad():
            outputs = mixed.forward(images)
            knn = [mixed.memory.distances(i, out.tokens) for i, out in enumerate(outputs)]
            expected = [
                mixed.patch_scores(out).clamp_min(0) ** (1 - weight) * d**weight for out, d in zip(outputs, knn)
            ]
            _, maps = mixed.score_images(images)
        exact = torch.cdist(outputs[0].tokens[0], train_maps[0].permute(0, 2, 3, 1).reshape(-1, 3)).min(1).values
        torch.testing.assert_close(knn[0][0], exact, rtol=1e-4, atol=1e-5)  # the nearest normal patch, exactly
        grids = [out.grid for out in outputs]
        torch.testing.assert_close(maps, anomaly_map([e.view(-1, *g) for e, g in zip(expected, grids)], (32, 32)))
        state = mixed.state_dict()
        assert {"memory.stage0", "memory.stage1"} <= set(state)
        again = tiny_fod(memory_weight=weight).eval()
        again.load_state_dict(state)  # the memory takes the saved shape
        with torch.no_grad():
            torch.testing.assert_close(again.score_images(images)[1], maps)
    assert not torch.equal(maps, fod_maps) and fod_scores.shape == (2,)


def test_memory_settings_out_of_range_are_refused():
    with pytest.raises(ConfigError, match=r"model.net.memory_weight=1.5 must be in \[0, 1\]"):
        tiny_fod(memory_weight=1.5)
    with pytest.raises(ConfigError, match=r"model.net.memory_ratio=0.0 must be in \(0, 1\]"):
        tiny_fod(memory_weight=0.5, memory_ratio=0.0)
    with pytest.raises(ConfigError, match=r"model.net.memory_max_patches=0 must be >= 1 \(null: no bound\)"):
        tiny_fod(memory_weight=0.5, memory_max_patches=0)


def test_a_bounded_memory_keeps_the_coreset_of_its_bound_and_leaves_smaller_sets_whole():
    train_maps = [torch.randn(6, 3, 4, 4), torch.randn(6, 3, 2, 2)]  # 96 and 24 patches
    whole = tiny_fod(memory_weight=0.5).memory
    whole.set(train_maps)
    bounded = tiny_fod(memory_weight=0.5, memory_max_patches=30)
    assert bounded.config["memory_max_patches"] == 30 and tiny_fod().config["memory_max_patches"] is None
    bounded.memory.set(train_maps)
    assert bounded.memory.stage0.shape == (30, 3)  # the bound: a coreset of 30 of the 96 patches
    torch.testing.assert_close(bounded.memory.stage1, whole.stage1)  # 24 patches: under the bound, all kept
    rows = {tuple(r) for r in whole.stage0.tolist()}
    assert all(tuple(r) in rows for r in bounded.memory.stage0.tolist())  # chosen among the training patches
    same = PatchMemory(2, 30 / 96)  # the bound is the coreset that ratio keeps, patch for patch
    same.set(train_maps)
    torch.testing.assert_close(bounded.memory.stage0, same.stage0)
    ratio_first = PatchMemory(2, 0.25, max_patches=30)  # a ratio keeping fewer than the bound wins
    assert ratio_first.kept(96) == 24 and ratio_first.kept(1000) == 30
    # exactly the bound, where n * (bound / n) rounds below it (49,999 for 75,776 patches)
    assert PatchMemory(2, max_patches=50_000).kept(75_776) == 50_000 and PatchMemory(2, max_patches=1).kept(99) == 1
    with pytest.raises(ValueError, match="keeps no patch of 99: raise model.net.memory_ratio"):
        PatchMemory(2, 0.001).kept(99)


def test_a_memory_loaded_beyond_its_bound_is_used_as_it_is_with_a_warning(caplog):
    unbounded = PatchMemory(1)
    unbounded.set([torch.randn(2, 3, 4, 4)])  # 32 patches
    bounded = PatchMemory(1, max_patches=10)
    with caplog.at_level("WARNING"):
        bounded.load_state_dict(unbounded.state_dict())
    torch.testing.assert_close(bounded.stage0, unbounded.stage0)
    assert "holds 32 patches per stage, more than model.net.memory_max_patches=10" in caplog.text
    caplog.clear()
    PatchMemory(1, max_patches=40).load_state_dict(unbounded.state_dict())
    assert "memory_max_patches" not in caplog.text  # within its bound: nothing to say


def test_the_bounded_memory_logs_its_coreset_progress(caplog):
    memory = PatchMemory(1, max_patches=10)
    with caplog.at_level("INFO"):
        memory.set([torch.randn(2, 3, 4, 4)])
    assert memory.stage0.shape == (10, 3)
    assert "FOD memory: stage 0 coreset (greedy k-center selections): 10 to do" in caplog.text


def test_the_geometric_stage_mix_leaves_each_stages_scale_out():
    generator = torch.Generator().manual_seed(0)
    maps = [torch.rand(3, 4, 4, generator=generator) + 0.1, torch.rand(3, 2, 2, generator=generator) + 0.1]
    mean, geometric = anomaly_map(maps, (8, 8)), anomaly_map(maps, (8, 8), "geometric")
    up = [F.interpolate(m[:, None], size=(8, 8), mode="bilinear", align_corners=True)[:, 0] for m in maps]
    torch.testing.assert_close(mean, (up[0] + up[1]) / 2)
    torch.testing.assert_close(geometric, (up[0] * up[1]).sqrt())
    # a stage whose scores grow tenfold scales the geometric map by a constant: no ranking changes
    scaled = anomaly_map([maps[0] * 10, maps[1]], (8, 8), "geometric")
    torch.testing.assert_close(scaled, geometric * 10**0.5)
    assert tiny_fod().config["stage_mix"] == "mean"  # the authors' by default
    with pytest.raises(ConfigError, match=r"model.net.stage_mix='median' is unknown"):
        tiny_fod(stage_mix="median")
