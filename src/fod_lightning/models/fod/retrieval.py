"""References retrieved per image, for one FOD over many categories (the unified setting), where the authors' one mean
reference per category does not apply and the category is never given.

A memory of M reference maps per stage, each with a key (a global descriptor: the spatial mean of every stage's pooled
map, concatenated). An image's reference is the mean of the maps of its ``neighbours`` nearest keys:

- ``retrieved``: the memory holds every normal training image (M = N); in training an image's own entry is left out,
  so that its reference is other images, as at test;
- ``clustered``: the memory holds ``clusters`` means of the training images grouped by k-means on their keys (one
  reference per group, none of them told a category); the nearest one is used.
"""

import torch

from fod_lightning.errors import ConfigError
from fod_lightning.models.base import FittedBuffers

MODES = ("mean", "retrieved", "clustered")  # mean: the authors' one reference (models/fod/reference.py)
SELF = 1e-9  # a key this close to the query's (squared, relative) is the query itself


def descriptors(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-stage pooled maps, each (B, C_s, h_s, w_s) -> global descriptors (B, sum C_s), float32."""
    return torch.cat([m.float().mean(dim=(2, 3)) for m in maps], dim=1)


def kmeans(points: torch.Tensor, k: int, seed: int = 0, iterations: int = 30) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding: the cluster of each of the (N, D) points, (N,) in [0, k)."""
    generator = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    centres = points[torch.randint(n, (1,), generator=generator)]
    while centres.shape[0] < k:
        d2 = torch.cdist(points, centres).min(dim=1).values ** 2
        weights = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / n)
        centres = torch.cat([centres, points[torch.multinomial(weights, 1, generator=generator)]])
    for _ in range(iterations):
        assignment = torch.cdist(points, centres).argmin(dim=1)
        moved = torch.stack([points[assignment == j].mean(0) if (assignment == j).any() else centres[j]
                             for j in range(k)])  # fmt: skip
        if torch.equal(moved, centres):
            break
        centres = moved
    return torch.cdist(points, centres).argmin(dim=1)


class ReferenceMemory(FittedBuffers):
    """The retrievable references: ``keys`` (M, D) and per stage ``stage<i>`` (M, C, h, w), persistent buffers.

    Args:
        n_stages: stages of the model.
        mode: ``retrieved`` or ``clustered`` (see the module docstring).
        neighbours: how many nearest references are averaged (``retrieved``).
        clusters: how many groups (``clustered``).
    """

    def __init__(self, n_stages: int, mode: str, neighbours: int = 5, clusters: int = 8) -> None:
        super().__init__()
        if mode not in MODES[1:]:
            raise ConfigError(f"model.net.reference_mode={mode!r} is unknown; use one of {', '.join(MODES)}")
        if neighbours < 1 or clusters < 1:
            raise ConfigError("model.net.reference_neighbours and model.net.reference_clusters must be at least 1")
        self.n_stages, self.mode = n_stages, mode
        self.neighbours = neighbours if mode == "retrieved" else 1
        self.clusters = clusters
        self.register_buffer("keys", torch.empty(0))
        for i in range(n_stages):
            self.register_buffer(f"stage{i}", torch.empty(0))

    @property
    def is_set(self) -> bool:
        return self.keys.numel() > 0

    def set(self, maps: list[torch.Tensor], seed: int = 0) -> None:
        """maps: per stage the pooled maps (N, C, h, w) of every normal training image."""
        keys = descriptors(maps)
        if self.mode == "clustered":
            groups = kmeans(keys, min(self.clusters, keys.shape[0]), seed)
            members = [groups == j for j in range(int(groups.max()) + 1) if (groups == j).any()]
            keys = torch.stack([keys[m].mean(0) for m in members])
            maps = [torch.stack([m[g].double().mean(0).float() for g in members]) for m in maps]
        device = self.keys.device
        self.keys = keys.contiguous().to(device)
        for i, m in enumerate(maps):
            setattr(self, f"stage{i}", m.float().contiguous().to(device))

    def nearest(self, maps: list[torch.Tensor], exclude_self: bool = False) -> torch.Tensor:
        """The (B, k) indices of the references of a batch of per-stage pooled maps; ``exclude_self``: an image found
        in the memory (a training image, in training) does not retrieve itself."""
        if not self.is_set:
            raise RuntimeError("the reference memory is empty: fit the model, or load a checkpoint that holds it")
        queries = descriptors(maps).to(self.keys.dtype)
        # (B, M) squared distances by matrix products (cdist does not export to ONNX)
        d2 = (queries**2).sum(1, keepdim=True) + (self.keys**2).sum(1)[None] - 2 * queries @ self.keys.T
        k = min(self.neighbours, self.keys.shape[0] - int(exclude_self))
        if exclude_self:
            scale = (queries**2).sum(dim=1, keepdim=True).clamp_min(1e-12)
            d2 = torch.where(d2 <= SELF * scale, torch.full_like(d2, float("inf")), d2)
        return d2.topk(max(k, 1), dim=1, largest=False).indices

    def tokens(self, stage: int, indices: torch.Tensor) -> torch.Tensor:
        """The references of a stage for a batch as tokens (B, L, C): the mean of the retrieved maps, row-major."""
        maps = getattr(self, f"stage{stage}")[indices].mean(dim=1)  # (B, C, h, w)
        return maps.flatten(2).transpose(1, 2)
