"""The fast greedy k-center coreset chooses exactly the rows of the exact one (issue 25): the same indices in the same
order, ties included, in float32 and float64, on random rows, on rows with duplicates and ties, and on real PatchCore
patch features; elsewhere (other dtypes, non-finite rows) "fast" is the exact method."""

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

import fod_lightning.models.memory_bank as memory_bank
from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.memory_bank import coreset, coreset_size, fast_applies, k_center_greedy, k_center_greedy_fast
from fod_lightning.models.patchcore import PatchCore


def both(features: torch.Tensor, k: int, start: int, leaf_rows: int = memory_bank.LEAF_ROWS):
    exact = k_center_greedy(features, k, start, method="exact")
    return exact, k_center_greedy_fast(features, k, start, leaf_rows=leaf_rows)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("seed", "n", "d", "k", "leaf_rows"),
    [(0, 2000, 16, 400, 128), (1, 3000, 40, 300, 32), (2, 700, 3, 300, 8), (3, 1500, 152, 150, 128)],
)
def test_fast_chooses_the_exact_rows_on_random_rows(dtype, seed, n, d, k, leaf_rows):
    generator = torch.Generator().manual_seed(seed)
    features = (torch.randn(n, d, generator=generator) * torch.rand(d, generator=generator) * 10 + 3).to(dtype)
    exact, fast = both(features, k, seed, leaf_rows)
    assert torch.equal(exact, fast)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_chooses_the_exact_rows_with_duplicates_and_ties(dtype):
    generator = torch.Generator().manual_seed(4)
    grid = torch.randint(0, 3, (1200, 5), generator=generator).to(dtype)  # many equal distances
    distinct = torch.unique(grid, dim=0).shape[0]
    exact, fast = both(grid, distinct + 20, 7, leaf_rows=16)  # past the distinct rows every distance is 0: row 0
    assert torch.equal(exact, fast) and len(set(exact[:distinct].tolist())) == distinct
    assert exact[distinct:].tolist() == [0] * 20
    rows = torch.randn(1000, 8, generator=generator).to(dtype)
    rows[500:800] = rows[:300]  # duplicated rows
    rows[900:] = 0.0
    exact, fast = both(rows, 250, 3, leaf_rows=32)
    assert torch.equal(exact, fast)


def test_fast_chooses_the_exact_rows_on_patchcore_features():
    backbone = FeatureExtractor("tf_efficientnet_lite0", strides=(8, 16), weights="efficientnet_lite0_package")
    with pytest.raises(ConfigError, match="model.net.coreset_method='greedy' is unknown"):
        PatchCore(backbone, coreset_method="greedy")
    model = PatchCore(backbone).eval()
    assert model.config["coreset_method"] == "fast"
    rng = np.random.default_rng(0)
    crops = []
    for name in ("brick", "grass", "gravel"):
        photo = torch.from_numpy(getattr(skimage.data, name)().astype(np.float32) / 255.0)
        for _ in range(2):
            y, x = rng.integers(0, 512 - 160, size=2)
            crops.append(photo[y : y + 160, x : x + 160])
    images = F.interpolate(torch.stack(crops)[:, None], size=(128, 128), mode="bilinear").expand(-1, 3, -1, -1)
    with torch.no_grad():
        embedded = model.embed((images - 0.45) / 0.225)
    patches = embedded.permute(0, 2, 3, 1).reshape(-1, embedded.shape[1]).contiguous()  # (1536, 152)
    for dtype in (torch.float32, torch.float64):
        features = patches.to(dtype)
        k = coreset_size(len(features), 0.2)
        exact = coreset(features, k, 0.9, torch.Generator().manual_seed(0), method="exact")
        fast = coreset(features, k, 0.9, torch.Generator().manual_seed(0), method="fast")
        assert torch.equal(exact, fast) and fast.numel() == 307


def test_fast_keeps_full_precision_products(monkeypatch):
    """Its rounding bound assumes float32 products: no bfloat16 / TF32 ones (``medium`` may allow them on a CPU)."""
    rows = torch.randn(800, 12, generator=torch.Generator().manual_seed(8))
    addmm, seen = torch.addmm, []

    def spy(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return addmm(*args, **kwargs)

    monkeypatch.setattr(torch, "addmm", spy)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        fast = k_center_greedy_fast(rows, 80, 0)
        assert seen and set(seen) == {"highest"} and torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert torch.equal(fast, k_center_greedy(rows, 80, 0, method="exact"))


def test_fast_is_the_exact_method_where_it_does_not_apply():
    rows = torch.randn(300, 4, generator=torch.Generator().manual_seed(5))
    assert fast_applies(rows, 30) and not fast_applies(rows, 1) and not fast_applies(rows.half(), 30)
    rows[10, 2] = float("nan")
    assert not fast_applies(rows, 30)
    assert torch.equal(k_center_greedy(rows, 30, 0, method="fast"), k_center_greedy(rows, 30, 0, method="exact"))
    assert not fast_applies(torch.full((5, 2), 3e38), 2)  # squared distances would overflow float32
    with pytest.raises(ValueError, match="method 'greedy' is unknown"):
        k_center_greedy(rows, 30, 0, method="greedy")


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_progress_is_reported(method, monkeypatch):
    rows = torch.randn(500, 6, generator=torch.Generator().manual_seed(6))
    calls = []
    k_center_greedy(rows, 50, 0, method=method, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(50, 50)]  # a quick selection: only the end
    monkeypatch.setattr(memory_bank, "PROGRESS_SECONDS", 0.0)
    calls.clear()
    k_center_greedy(rows, 50, 0, method=method, progress=lambda done, total: calls.append((done, total)))
    assert [done for done, _ in calls] == [*range(2, 51), 50] and {total for _, total in calls} == {50}


def test_patchcore_fit_reports_the_coreset_progress(caplog, monkeypatch):
    """The coreset is the long part of PatchCore's fit: it logs its size first and its progress as it goes."""
    import logging

    monkeypatch.setattr(memory_bank, "PROGRESS_SECONDS", 0.0)
    backbone = FeatureExtractor("tf_efficientnet_lite0", strides=(8, 16), weights="efficientnet_lite0_package")
    model = PatchCore(backbone)
    steps = []
    monkeypatch.setattr("fod_lightning.utils.progress.Progress.step_to",
                        lambda self, done, total=None: steps.append((done, total)))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="fod_lightning"):
        model.fit(torch.randn(500, 20, generator=torch.Generator().manual_seed(0)))
    assert "PatchCore: coreset (greedy k-center selections): 50 to do" in caplog.text
    assert steps[-1] == (50, 50) and len(steps) > 2 and [d for d, _ in steps] == sorted(d for d, _ in steps)
