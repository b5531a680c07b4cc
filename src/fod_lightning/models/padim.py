"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization",
ICPR 2020) in pure torch.

Embeddings of three backbone levels (the deeper ones upsampled, nearest, to the first one's grid, concatenated), a
fixed random subset of their channels, one Gaussian per grid position fitted on the normal training images
(covariance regularised by 0.01 I), and the Mahalanobis distance of each test patch to its position's Gaussian. The
map is the distances upsampled (bilinear) to the input size and blurred (sigma 4); the image score is its maximum.
Equal to anomalib 2.7's ``PadimModel`` on identical features (tests/unit/models/test_baselines_parity.py).
"""

import torch
import torch.nn.functional as F

from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.base import AnomalyNet
from fod_lightning.models.smoothing import gaussian_blur

PAPER_FEATURES = {"resnet18": 100, "wide_resnet50_2": 550}  # the paper's random channel subsets
STABILISER = 1e-5  # added to the regularised covariance before its inversion (as anomalib)
POSITIONS_PER_BLOCK = 256  # grid positions whose covariances are inverted at once


def concatenated_levels(levels: list[torch.Tensor]) -> torch.Tensor:
    """Backbone maps (B, C_l, h_l, w_l), shallowest first -> (B, sum C_l, h_0, w_0), deeper levels upsampled with
    nearest neighbours to the first one's grid."""
    size = levels[0].shape[-2:]
    return torch.cat([levels[0], *(F.interpolate(level, size=size, mode="nearest") for level in levels[1:])], dim=1)


class PaDiM(AnomalyNet):
    """PaDiM on a frozen backbone.

    Args:
        backbone: the feature extractor; its stages (``strides``) are the levels (the paper: ResNet's layer1-3,
            strides 4, 8 and 16).
        n_features: channels kept of the concatenated embedding (None: the paper's 100 for ResNet-18 and 550 for
            WideResNet-50, else 100 or all there are).
        covariance_epsilon: the regularisation added to each position's covariance (the paper: 0.01).
        blur_sigma: Gaussian sigma (pixels) of the map.
        seed: of the random channel subset.
    """

    def __init__(self, backbone: FeatureExtractor, n_features: int | None = None, covariance_epsilon: float = 0.01,
                 blur_sigma: float = 4.0, seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        total = sum(backbone.channels)
        n_features = int(n_features or min(PAPER_FEATURES.get(backbone.name, 100), total))
        if not 0 < n_features <= total:
            raise ConfigError(f"model.net.n_features={n_features} must be in 1..{total}, the channels of "
                              f"{backbone.name} at strides {list(backbone.strides)}")  # fmt: skip
        self.config = {"backbone": getattr(backbone, "config", None), "n_features": n_features,
                       "covariance_epsilon": float(covariance_epsilon), "blur_sigma": float(blur_sigma),
                       "seed": int(seed)}  # fmt: skip
        self.backbone = backbone
        generator = torch.Generator().manual_seed(int(seed))
        self.register_buffer("channels", torch.randperm(total, generator=generator)[:n_features])
        self.register_buffer("mean", torch.empty(0))  # (C, h * w)
        self.register_buffer("inv_covariance", torch.empty(0))  # (h * w, C, C)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> embeddings (B, C, h, w) of the chosen channels."""
        return torch.index_select(concatenated_levels(self.backbone(images)), 1, self.channels)

    def fit(self, embeddings: torch.Tensor) -> None:
        """One Gaussian per grid position from the training embeddings (N, C, h, w), N >= 2: the mean, and the
        inverse of the unbiased covariance plus ``covariance_epsilon`` I (computed in float64)."""
        n, c, h, w = embeddings.shape
        if n < 2:
            raise ConfigError("PaDiM needs at least 2 normal training images to fit a covariance: add images")
        x = embeddings.reshape(n, c, h * w)
        mean = x.mean(dim=0)  # (C, L)
        identity = torch.eye(c, dtype=torch.float64, device=x.device)
        inverses = []
        for p in range(0, h * w, POSITIONS_PER_BLOCK):
            centred = (x[:, :, p : p + POSITIONS_PER_BLOCK] - mean[:, p : p + POSITIONS_PER_BLOCK]).double()
            covariance = torch.einsum("ncp,ndp->pcd", centred, centred) / (n - 1)
            regularised = covariance + (self.config["covariance_epsilon"] + STABILISER) * identity
            inverses.append(torch.linalg.inv(regularised).to(embeddings.dtype))
        self.mean, self.inv_covariance = mean.contiguous(), torch.cat(inverses)

    def score_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean.numel() == 0:
            raise RuntimeError("the Gaussians are not fitted: fit the model first, or load a fitted checkpoint")
        embedding = self.embed(images)
        batch, c, h, w = embedding.shape
        delta = (embedding.reshape(batch, c, h * w) - self.mean).permute(2, 0, 1)  # (L, B, C)
        distances = (torch.matmul(delta, self.inv_covariance) * delta).sum(2).permute(1, 0)  # (B, L) squared
        distances = distances.reshape(batch, 1, h, w).clamp(0).sqrt()
        upsampled = F.interpolate(distances, size=images.shape[-2:], mode="bilinear", align_corners=False)
        anomaly_map = gaussian_blur(upsampled[:, 0], self.config["blur_sigma"], padding="torch")
        return anomaly_map.amax(dim=(-2, -1)), anomaly_map
