"""PatchCore and PaDiM against anomalib 2.7's torch models on identical features, float64: the relative errors of the
maps and image scores, and whether the k-center coresets agree. The same comparisons as
tests/unit/models/test_baselines_parity.py, printed.

    .venv/bin/python experiments/2026-12-02_baselines_parity/parity.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from fod_lightning.models.memory_bank import k_center_greedy  # noqa: E402
from fod_lightning.models.padim import PaDiM  # noqa: E402
from fod_lightning.models.patchcore import PatchCore  # noqa: E402
from unit.models import test_baselines_parity as parity  # noqa: E402


def patchcore() -> tuple[float, float]:
    ours = PatchCore(parity.backbone((8, 16)), coreset_ratio=0.25).double().eval()
    theirs = parity.anomalib_patchcore.PatchcoreModel(layers=[2, 3], backbone=parity.LITE0, pre_trained=False)
    theirs = theirs.double()
    parity.same_weights(theirs, ours.backbone)
    train = parity.images(6, 0)
    embedding = ours.embed(train)
    ours.fit(embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]))
    theirs.memory_bank = ours.memory_bank.clone()
    return parity.score_both(ours, theirs, parity.images(8, 1))


def padim() -> tuple[float, float]:
    ours = PaDiM(parity.backbone((4, 8, 16)), n_features=50).double().eval()
    theirs = parity.anomalib_padim.PadimModel(backbone=parity.LITE0, layers=[1, 2, 3], pre_trained=False,
                                              n_features=50).double()  # fmt: skip
    parity.same_weights(theirs, ours.backbone)
    theirs.idx = ours.channels.clone()
    train = parity.images(8, 0)
    theirs.train()
    with torch.no_grad():
        theirs(train)
        theirs.fit()
        ours.fit(ours.embed(train))
    return parity.score_both(ours, theirs, parity.images(8, 1))


def coresets(trials: int = 20) -> int:
    same = 0
    for seed in range(trials):
        features = torch.randn(2000, 32, generator=torch.Generator().manual_seed(seed))
        sampler = parity.KCenterGreedy(embedding=features, sampling_ratio=0.1)
        sampler.model.fit = lambda embedding, s=sampler: s.model
        sampler.model.transform = lambda embedding: embedding
        torch.manual_seed(seed)
        theirs = sampler.select_coreset_idxs()
        torch.manual_seed(seed)
        start = int(torch.randint(high=2000, size=(1,)).squeeze())
        same += k_center_greedy(features, 200, start).tolist() == theirs
    return same


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    for name, compare in (("PatchCore", patchcore), ("PaDiM", padim)):
        maps, scores = compare()
        print(
            f"{name}, 8 test images of 64 px: relative error of the maps {maps:.2e}, of the image scores {scores:.2e}"
        )
    torch.set_default_dtype(torch.float32)
    print(f"k-center coreset (2000 x 32 features, 10%): the same 200 indices, in the same order, in {coresets()} of 20")
