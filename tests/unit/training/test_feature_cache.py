"""Cached training features: reused when nothing changed, recomputed when anything did, safe to load."""

import os
import pickle

import pytest
import torch

from fod_lightning.data.samples import Sample
from fod_lightning.run import run
from fod_lightning.training.fod.feature_cache import FeatureCache
from fod_lightning.training.fod.features import FeatureBatch, FeatureDataset

SETTINGS = {"backbone": "tf_efficientnet_lite0", "strides": [8, 16], "image_size": 32}


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / "imgs" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"pixels" * (i + 1))
        paths.append(path)
    return paths


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return [torch.full((3, 2, 4, 4), float(self.calls)), torch.ones(3, 5, 2, 2)]


def test_disk_cache_is_reused_until_an_image_or_a_setting_changes(tmp_path, images):
    cache, compute = FeatureCache("disk", str(tmp_path / "cache")), Counting()
    first = cache.features(images, SETTINGS, compute)
    again = cache.features(images, SETTINGS, compute)
    assert compute.calls == 1 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert not list((tmp_path / "cache").glob(".*tmp"))  # written atomically, nothing left over

    cache.features(images, SETTINGS | {"image_size": 64}, compute)
    assert compute.calls == 2
    images[1].write_bytes(b"another image")
    cache.features(images, SETTINGS, compute)
    assert compute.calls == 3
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3


def test_two_jobs_sharing_the_cache_folder_both_get_whole_features(tmp_path, images):
    """Two processes computing the same key at once: each writes its own temporary file and renames it
    into place, so both finish and the file left is complete."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        shapes = pool.starmap(_cache_worker, [(str(tmp_path / "cache"), [str(p) for p in images])] * 2)
    assert shapes == [[(3, 2, 4, 4), (3, 5, 2, 2)]] * 2
    (path,) = (tmp_path / "cache").glob("*.pt")
    assert torch.load(path, weights_only=True)["stage1"].shape == (3, 5, 2, 2)
    assert not list((tmp_path / "cache").glob(".*"))


def _cache_worker(directory, image_paths):
    from pathlib import Path

    maps = FeatureCache("disk", directory).features([Path(p) for p in image_paths], SETTINGS, Counting())
    return [tuple(m.shape) for m in maps]


def test_memory_cache_writes_nothing(tmp_path, images):
    compute = Counting()
    FeatureCache("memory", str(tmp_path / "cache")).features(images, SETTINGS, compute)
    assert compute.calls == 1 and not (tmp_path / "cache").exists()


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_or_damaged_cache_file_is_never_executed_but_replaced(tmp_path, images):
    cache, compute = FeatureCache("disk", str(tmp_path / "cache")), Counting()
    cache.features(images, SETTINGS, compute)
    (path,) = (tmp_path / "cache").glob("*.pt")
    evil = RunsCode()
    evil.marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(evil))
    maps = cache.features(images, SETTINGS, compute)
    assert not evil.marker.exists()
    assert compute.calls == 2 and maps[0][0, 0, 0, 0].item() == 2.0
    assert torch.load(path, weights_only=True)["stage0"][0, 0, 0, 0].item() == 2.0  # replaced


def test_unknown_mode_and_disk_without_folder_are_refused():
    with pytest.raises(ValueError, match="feature_cache='ram' is unknown"):
        FeatureCache("ram")
    with pytest.raises(ValueError, match="needs model.feature_cache_dir"):
        FeatureCache("disk", None)


def test_feature_dataset_fetches_whole_batches(tmp_path):
    samples = [Sample(tmp_path / f"{i}.png", 0, None, "good") for i in range(4)]
    maps = [torch.arange(4.0).view(4, 1, 1, 1), torch.arange(4.0).view(4, 1, 1, 1) * 10]
    batch = FeatureDataset(maps, samples).__getitems__([2, 0])
    assert isinstance(batch, FeatureBatch) and len(batch) == 2 and not hasattr(batch, "image")
    assert batch.features[1].flatten().tolist() == [20.0, 0.0] and batch.path[0].endswith("2.png")


def test_training_from_cached_features_equals_training_from_images(make_config):
    """The cache changes where features come from, not what the model learns."""
    results = {}
    for mode in ("off", "memory", "disk"):
        cfg = make_config("data.category=brick", "data.batch_size=2", f"model.feature_cache={mode}",
                          "~callbacks.test_pictures")  # fmt: skip
        results[mode] = run(cfg)["categories"]["brick"]
    for mode in ("memory", "disk"):
        for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
            assert results[mode][metric] == pytest.approx(results["off"][metric], abs=1e-4), (mode, metric)
