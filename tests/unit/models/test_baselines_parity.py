"""PatchCore and PaDiM equal anomalib 2.7's torch models on identical features: the same backbone weights, the same
memory bank / channel subset, float64 throughout; maps and scores to 1e-5 (measured: about 1e-12). The coreset is
the same greedy k-center selection given the same features and first patch."""

import pytest
import torch

from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.memory_bank import k_center_greedy, nearest_neighbours
from fod_lightning.models.padim import PaDiM
from fod_lightning.models.patchcore import PatchCore

anomalib_patchcore = pytest.importorskip("anomalib.models.image.patchcore.torch_model")
anomalib_padim = pytest.importorskip("anomalib.models.image.padim.torch_model")
from anomalib.models.components.sampling import KCenterGreedy  # noqa: E402

SIZE = 64
LITE0 = "tf_efficientnet_lite0"


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # anomalib builds its Gaussians in the default dtype
    yield
    torch.set_default_dtype(before)


def backbone(strides) -> FeatureExtractor:
    return FeatureExtractor(LITE0, strides=strides, weights="efficientnet_lite0_package")


def same_weights(theirs, ours: FeatureExtractor) -> None:
    """anomalib's timm extractor with our backbone's (offline ImageNet) weights, by name."""
    theirs.feature_extractor.feature_extractor.load_state_dict(ours.model.state_dict())


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)).double()


def score_both(ours, theirs, test: torch.Tensor) -> tuple[float, float]:
    """The relative errors of our maps and image scores against anomalib's, on the same test images."""
    theirs.eval()
    with torch.no_grad():
        expected = theirs(test)
        scores, maps = ours.score_images(test)
    return relative(maps, expected.anomaly_map[:, 0]), relative(scores, expected.pred_score.flatten())


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_patchcore_scores_and_maps_equal_anomalibs(float64):
    ours = PatchCore(backbone((8, 16)), coreset_ratio=0.25).double().eval()
    theirs = anomalib_patchcore.PatchcoreModel(layers=[2, 3], backbone=LITE0, pre_trained=False).double()
    same_weights(theirs, ours.backbone)
    train = images(6, 0)
    embeddings = ours.embed(train).permute(0, 2, 3, 1).reshape(-1, ours.embed(train).shape[1])
    theirs.train()
    with torch.no_grad():
        torch.testing.assert_close(theirs(train), embeddings, rtol=0, atol=0)  # the same patch features
    ours.fit(embeddings)
    assert ours.memory_bank.shape[0] == int(embeddings.shape[0] * 0.25)
    theirs.memory_bank = ours.memory_bank.clone()
    assert max(score_both(ours, theirs, images(3, 1))) < 1e-5


def test_chunked_nearest_neighbours_are_exact():
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(300, 7, generator=generator), torch.randn(500, 7, generator=generator)
    full = torch.cdist(queries, bank).topk(4, dim=1, largest=False)
    distances, indices = nearest_neighbours(queries, bank, 4, max_elements=1000)  # blocks of 2 queries x 500
    torch.testing.assert_close(distances, full.values, rtol=1e-5, atol=1e-5)
    assert torch.equal(indices, full.indices)
    distances, indices = nearest_neighbours(queries, bank, 4, max_elements=64)  # the bank in blocks of 64 too
    assert torch.equal(indices, full.indices)


def test_coreset_selection_equals_anomalibs_k_center_greedy():
    features = torch.randn(400, 12, generator=torch.Generator().manual_seed(3))
    sampler = KCenterGreedy(embedding=features, sampling_ratio=0.1)
    sampler.model.fit = lambda embedding: sampler.model  # the same (here: no) projection for both
    sampler.model.transform = lambda embedding: embedding
    torch.manual_seed(7)
    theirs = sampler.select_coreset_idxs()
    torch.manual_seed(7)
    start = int(torch.randint(high=400, size=(1,)).squeeze())
    assert k_center_greedy(features, 40, start).tolist() == theirs


def test_padim_scores_and_maps_equal_anomalibs(float64):
    ours = PaDiM(backbone((4, 8, 16)), n_features=50).double().eval()
    theirs = anomalib_padim.PadimModel(backbone=LITE0, layers=[1, 2, 3], pre_trained=False, n_features=50).double()
    same_weights(theirs, ours.backbone)
    theirs.idx = ours.channels.clone()  # the same random channel subset
    train = images(8, 0)
    theirs.train()
    with torch.no_grad():
        torch.testing.assert_close(theirs(train), ours.embed(train), rtol=0, atol=0)
        theirs.fit()
        ours.fit(ours.embed(train))
    assert max(score_both(ours, theirs, images(3, 1))) < 1e-5
