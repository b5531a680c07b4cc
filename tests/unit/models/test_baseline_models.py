"""PatchCore and PaDiM as torch models: shapes, settings refused with one line, the coreset, unfitted use."""

import pytest
import torch

from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.memory_bank import coreset, coreset_size, johnson_lindenstrauss_dim, sparse_random_projection
from fod_lightning.models.padim import PaDiM
from fod_lightning.models.patchcore import PatchCore


@pytest.fixture(scope="module")
def lite0():
    return FeatureExtractor("tf_efficientnet_lite0", strides=(4, 8, 16), weights="efficientnet_lite0_package")


def test_patchcore_fits_a_coreset_and_scores_maps_at_the_input_size(lite0):
    backbone = FeatureExtractor("tf_efficientnet_lite0", weights="efficientnet_lite0_package")
    net = PatchCore(backbone, coreset_ratio=0.5).eval()
    with pytest.raises(RuntimeError, match="memory bank is empty: fit the model first"):
        net.score_images(torch.randn(1, 3, 32, 32))
    embedding = net.embed(torch.randn(3, 3, 32, 32))
    assert embedding.shape == (3, 40 + 112, 4, 4)
    net.fit(embedding.permute(0, 2, 3, 1).reshape(-1, 152))
    assert net.memory_bank.shape == (24, 152)
    scores, maps = net.score_images(torch.randn(2, 3, 32, 32))
    assert scores.shape == (2,) and maps.shape == (2, 32, 32) and torch.isfinite(maps).all()


def test_padim_fits_one_gaussian_per_position(lite0):
    net = PaDiM(lite0, n_features=20).eval()
    assert net.config["n_features"] == 20 and len(set(net.channels.tolist())) == 20
    with pytest.raises(ConfigError, match="at least 2 normal training images"):
        net.fit(net.embed(torch.randn(1, 3, 32, 32)))
    net.fit(net.embed(torch.randn(4, 3, 32, 32)))
    assert net.mean.shape == (20, 64) and net.inv_covariance.shape == (64, 20, 20)
    scores, maps = net.score_images(torch.randn(2, 3, 32, 32))
    assert scores.shape == (2,) and maps.shape == (2, 32, 32)
    assert torch.equal(scores, maps.flatten(1).amax(1))  # the image score is the map's maximum


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b: PatchCore(b, coreset_ratio=0.0), r"model.net.coreset_ratio=0.0 must be in \(0, 1\]"),
        (lambda b: PatchCore(b, num_neighbors=0), r"model.net.num_neighbors=0 must be at least 1"),
        (lambda b: PaDiM(b, n_features=999), r"model.net.n_features=999 must be in 1..176"),
    ],
)
def test_settings_out_of_range_are_refused_naming_the_key(lite0, build, message):
    with pytest.raises(ConfigError, match=message):
        build(lite0)


def test_padim_takes_the_papers_channel_count_or_at_most_100(lite0):
    assert PaDiM(lite0).config["n_features"] == 100  # lite0: 176 channels, no paper value


def test_coreset_keeps_the_ratio_of_distinct_patches_and_projects_when_it_reduces():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(500, 8, generator=generator)
    keep = coreset(embeddings, coreset_size(500, 0.1), 0.9, torch.Generator().manual_seed(1))
    assert len(keep) == 50 and len(set(keep.tolist())) == 50
    assert keep.tolist() == coreset(embeddings, 50, 0.9, torch.Generator().manual_seed(1)).tolist()  # seeded
    assert johnson_lindenstrauss_dim(500, 0.9) > 8  # too few features to reduce: selected on the features
    projection = sparse_random_projection(10000, 300, torch.Generator().manual_seed(0))
    assert projection.shape == (10000, 300) and 0.005 < (projection != 0).float().mean() < 0.015  # density 1/100
    with pytest.raises(ValueError, match="keeps no patch"):
        coreset_size(500, 0.001)
