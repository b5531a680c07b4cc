"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022) in pure torch.

Locally aware patch features of two backbone levels (3x3 average pooling; the deeper level upsampled bilinearly to
the first one's grid and concatenated), a memory bank of the normal training patches reduced to a greedy k-center
coreset, the nearest-neighbour distance of each test patch as its score, and the image score as the largest patch
score re-weighted by how isolated its nearest neighbour is among its own neighbours in the bank (the paper's
equation 7). The map is the patch scores upsampled (nearest) to the input size and blurred (sigma 4). Equal to
anomalib 2.7's ``PatchcoreModel`` on identical features (tests/unit/models/test_baselines_parity.py).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.base import AnomalyNet
from fod_lightning.models.memory_bank import (
    CORESET_METHODS,
    coreset_size,
    euclidean_distances,
    logged_coreset,
    nearest_neighbours,
)
from fod_lightning.models.smoothing import gaussian_blur


def locally_aware_features(levels: list[torch.Tensor]) -> torch.Tensor:
    """Backbone maps (B, C_l, h_l, w_l), shallowest first -> (B, sum C_l, h_0, w_0): each 3x3-average-pooled, the
    deeper ones upsampled bilinearly to the first one's grid."""
    pooled = [F.avg_pool2d(level, 3, stride=1, padding=1) for level in levels]
    size = pooled[0].shape[-2:]
    return torch.cat([pooled[0], *(F.interpolate(p, size=size, mode="bilinear") for p in pooled[1:])], dim=1)


class PatchCore(AnomalyNet):
    """PatchCore on a frozen backbone.

    Args:
        backbone: the feature extractor; its stages (``strides``) are the levels (the paper: WideResNet-50's
            layer2 and layer3, strides 8 and 16).
        coreset_ratio: the fraction of training patches the memory bank keeps (the paper: 0.1; 1.0 keeps all).
        num_neighbors: the bank neighbours of the image score's re-weighting (the paper: b = 9; 1: no re-weighting).
        projection_eps: distortion of the random projection the coreset is selected on (Johnson-Lindenstrauss).
        blur_sigma: Gaussian sigma (pixels) of the map.
        seed: of the projection and the coreset's first patch.
        coreset_method: ``fast`` or ``exact``: the greedy k-center's implementation (the same patches either way;
            ``fast`` is many times faster on a CPU, see :func:`~fod_lightning.models.memory_bank.k_center_greedy`).
    """

    def __init__(self, backbone: FeatureExtractor, coreset_ratio: float = 0.1, num_neighbors: int = 9,
                 projection_eps: float = 0.9, blur_sigma: float = 4.0, seed: int = 0,
                 coreset_method: str = "fast") -> None:  # fmt: skip
        super().__init__()
        if not 0.0 < coreset_ratio <= 1.0:
            raise ConfigError(f"model.net.coreset_ratio={coreset_ratio} must be in (0, 1]: e.g. 0.1 (the paper's)")
        if coreset_method not in CORESET_METHODS:
            raise ConfigError(f"model.net.coreset_method={coreset_method!r} is unknown: use one of {CORESET_METHODS}")
        if num_neighbors < 1:
            raise ConfigError(f"model.net.num_neighbors={num_neighbors} must be at least 1: e.g. 9 (the paper's)")
        self.config = {"backbone": getattr(backbone, "config", None), "coreset_ratio": float(coreset_ratio),
                       "num_neighbors": int(num_neighbors), "projection_eps": float(projection_eps),
                       "blur_sigma": float(blur_sigma), "seed": int(seed),
                       "coreset_method": coreset_method}  # fmt: skip
        self.backbone = backbone
        self.register_buffer("memory_bank", torch.empty(0))
        self.chunk_queries = True

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> patch features (B, D, h, w)."""
        return locally_aware_features(self.backbone(images))

    def fit(self, embeddings: torch.Tensor) -> None:
        """The memory bank: the coreset of the training patches ``embeddings`` (N, D)."""
        generator = torch.Generator().manual_seed(self.config["seed"])
        ratio, eps, method = (self.config[key] for key in ("coreset_ratio", "projection_eps", "coreset_method"))
        keep = logged_coreset("PatchCore: coreset (greedy k-center selections)", embeddings,
                              coreset_size(len(embeddings), ratio), eps, generator, method)  # fmt: skip
        self.memory_bank = embeddings[keep].contiguous()

    def score_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory_bank.numel() == 0:
            raise RuntimeError("the memory bank is empty: fit the model first, or load a fitted checkpoint")
        embedding = self.embed(images)
        batch, dim, h, w = embedding.shape
        patches = embedding.permute(0, 2, 3, 1).reshape(-1, dim)  # (B * h * w, D), row-major per image
        distances, locations = nearest_neighbours(patches, self.memory_bank, 1, self.chunk_queries)
        patch_scores, locations = distances.view(batch, h * w), locations.view(batch, h * w)
        image_scores = self.reweighted_scores(patch_scores, locations, patches.view(batch, h * w, dim))
        upsampled = F.interpolate(patch_scores.view(batch, 1, h, w), size=images.shape[-2:])  # nearest
        return image_scores, gaussian_blur(upsampled[:, 0], self.config["blur_sigma"], padding="torch")

    def reweighted_scores(self, patch_scores: torch.Tensor, locations: torch.Tensor,
                          patches: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The paper's image score: the largest patch score s* times 1 - softmax over the distances of its patch to
        the ``num_neighbors`` bank neighbours of its nearest bank patch m* (the first of which is m* itself).

        Args:
            patch_scores, locations: (B, L) nearest-neighbour distance and bank index per patch.
            patches: (B, L, D) the patch features.
        """
        if self.config["num_neighbors"] == 1:
            return patch_scores.amax(dim=1)
        rows = torch.arange(patch_scores.shape[0], device=patch_scores.device)
        worst = patch_scores.argmax(dim=1)
        score, nearest = patch_scores[rows, worst], self.memory_bank[locations[rows, worst]]  # s*, m*
        _, support = nearest_neighbours(nearest, self.memory_bank, self.config["num_neighbors"], self.chunk_queries)
        distances = euclidean_distances(patches[rows, worst].unsqueeze(1), self.memory_bank[support])  # (B, 1, b)
        return (1 - F.softmax(distances.squeeze(1), dim=1))[:, 0] * score

    @contextmanager
    def export_mode(self, example: torch.Tensor | None = None) -> Iterator[None]:
        """Queries in one block (their number depends on the batch, which is dynamic in the export)."""
        self.chunk_queries = False
        try:
            yield
        finally:
            self.chunk_queries = True
