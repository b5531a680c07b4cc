"""Greedy k-center coreset on an MVTec-sized category: ours "fast" vs ours "exact" vs anomalib 2.7's KCenterGreedy.

245,760 real patch features (240 images at 256 px, EfficientNet-Lite0 with the offline package weights, strides 8
and 16, PatchCore's locally aware features: 1024 patches x 152 features per image) from random crops (200 to 512 px,
resized to 256, random flips) of scikit-image's brick, grass and gravel photos. The JL dimension of eps 0.9 for this
many patches is 306 >= 152: no projection, the greedy runs on the features themselves (as in PatchCore.fit).

Times, in one run with torch.set_num_threads(2): (a) fast on the full 10% coreset (24,576 selections), (b) exact and
(c) anomalib on their first N selections, extrapolated linearly to 24,576 (their per-selection cost is constant).

    flock /work/cpu.lock .venv/bin/python experiments/2026-12-06_scale/coreset_bench.py [--n-slow 300] [--cache F]
"""

import argparse
import datetime
import functools
import subprocess
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.memory_bank import johnson_lindenstrauss_dim, k_center_greedy
from fod_lightning.models.patchcore import PatchCore

HERE = Path(__file__).parent
IMAGES, SIZE, RATIO, SEED = 240, 256, 0.1, 0
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def crops(n: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` normalised RGB crops (n, 3, SIZE, SIZE), a third from each photo."""
    photos = [getattr(skimage.data, name)().astype(np.float32) / 255.0 for name in ("brick", "grass", "gravel")]
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(200, 513))
        y, x = (int(rng.integers(0, s - side + 1)) for s in photo.shape[:2])
        crop = torch.from_numpy(photo[y : y + side, x : x + side].copy())[None, None]
        crop = F.interpolate(crop, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)[0]
        crop = crop.expand(3, SIZE, SIZE)
        out.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    images = torch.stack(out)
    return (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@torch.no_grad()
def features(cache: Path | None) -> torch.Tensor:
    """(245760, 152) float32 patch features, as PatchCore.fit receives them."""
    if cache is not None and cache.is_file():
        return torch.load(cache)
    backbone = FeatureExtractor("tf_efficientnet_lite0", strides=(8, 16), weights="efficientnet_lite0_package")
    model = PatchCore(backbone).eval()
    images = crops(IMAGES, np.random.default_rng(SEED))
    embedded = torch.cat([model.embed(batch) for batch in images.split(16)])
    patches = embedded.permute(0, 2, 3, 1).reshape(-1, embedded.shape[1]).contiguous()
    if cache is not None:
        torch.save(patches, cache)
    return patches


def anomalib_selection(patches: torch.Tensor, k: int, seed: int) -> tuple[list[int], float]:
    """anomalib 2.7's KCenterGreedy, its first ``k`` selections from the start torch.randint draws after
    ``torch.manual_seed(seed)``, on ``patches`` themselves (its projection off, as in
    tests/unit/models/test_baselines_parity.py)."""
    from anomalib.models.components.sampling import KCenterGreedy
    from anomalib.models.components.sampling import k_center_greedy as theirs

    theirs.tqdm = functools.partial(tqdm, disable=True)  # no progress bar
    sampler = KCenterGreedy(embedding=patches, sampling_ratio=RATIO)
    sampler.model.fit = lambda embedding: sampler.model
    sampler.model.transform = lambda embedding: embedding
    sampler.coreset_size = k
    torch.manual_seed(seed)
    started = time.perf_counter()
    chosen = sampler.select_coreset_idxs()
    return chosen, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-slow", type=int, default=300, help="selections timed for exact and anomalib")
    parser.add_argument("--cache", type=Path, default=None, help="a .pt file caching the patch features")
    parser.add_argument("--out", type=Path, default=HERE / "coreset_bench.txt")
    args = parser.parse_args()
    torch.set_num_threads(2)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    model_name = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((s.split(":", 1)[1].strip() for s in model_name.splitlines() if "Model name" in s), "?")
    say(f"# coreset_bench.py, {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"cpu: {model_name}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    started = time.perf_counter()
    patches = features(args.cache)
    n, d = patches.shape
    k, slow = int(n * RATIO), args.n_slow
    jl = johnson_lindenstrauss_dim(n, 0.9)
    built = time.perf_counter() - started
    say(f"patches: {n} x {d} {patches.dtype} ({IMAGES} images at {SIZE} px, built in {built:.0f} s); "
        f"JL dim of eps 0.9: {jl} >= {d}: no projection; coreset {RATIO}: k = {k}")  # fmt: skip
    torch.manual_seed(SEED)
    start = int(torch.randint(high=n, size=(1,)).squeeze())  # anomalib's draw of its first patch

    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] >= 60 or done == total:
            last[0] = time.perf_counter()
            print(f"  fast: {done}/{total} after {last[0] - t0:.0f} s", flush=True)

    t0 = time.perf_counter()
    fast = k_center_greedy(patches, k, start, method="fast", progress=progress)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = k_center_greedy(patches, slow, start, method="exact")
    t_exact = (time.perf_counter() - t0) * k / slow
    theirs, t_anomalib = anomalib_selection(patches, slow, SEED)
    t_anomalib *= k / slow
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    projected = SparseRandomProjection(eps=0.9).fit(patches).transform(patches)  # what anomalib selects on
    _, t_projected = anomalib_selection(projected, slow // 3, SEED)
    t_projected *= k / (slow // 3)

    say(f"(a) ours fast, all {k} selections:      {t_fast:8.1f} s  ({t_fast / k * 1e3:6.2f} ms per selection)")
    say(f"(b) ours exact, {slow} selections x {k / slow:.1f}:  {t_exact:8.1f} s  ({t_exact / k * 1e3:6.2f} ms per "
        "selection, extrapolated)")  # fmt: skip
    per = t_anomalib / k * 1e3
    say(f"(c) anomalib 2.7 KCenterGreedy, {slow} x {k / slow:.1f}: {t_anomalib:8.1f} s  ({per:6.2f} ms per selection, "
        "extrapolated; on the same 152-dim features)")  # fmt: skip
    say(f"    (anomalib as shipped first projects the features up to {projected.shape[1]} dims: "
        f"{t_projected / k * 1e3:.2f} ms per selection over {slow // 3}, {t_projected:.0f} s extrapolated; "
        "not in the ratios)")  # fmt: skip
    say(f"speed-up of fast: x{t_anomalib / t_fast:.1f} over anomalib, x{t_exact / t_fast:.1f} over exact")
    say(f"fast's first {slow} indices equal exact's: {torch.equal(fast[:slow], exact)}; "
        f"equal anomalib's: {fast[:slow].tolist() == theirs}")  # fmt: skip
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
