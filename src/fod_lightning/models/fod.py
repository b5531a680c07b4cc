"""The FOD model: frozen backbone, one I2Correlation transformer per stage, anomaly scoring."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fod_lightning.errors import ConfigError
from fod_lightning.models.attention import squared_grid_distances
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.embedding import Embedding2D
from fod_lightning.models.encoder import Correlations, Encoder, EncoderLayer
from fod_lightning.models.losses import patch_discrepancy, reconstruction_error
from fod_lightning.models.reference import ReferenceFeatures
from fod_lightning.models.smoothing import gaussian_blur

SCORES = ("auto", "inter", "intra", "rec")


@dataclass
class StageOutput:
    """Forward result of one stage; L = h * w tokens in row-major order."""

    tokens: torch.Tensor  # (B, L, C) pooled backbone tokens, also the reconstruction target
    reconstruction: torch.Tensor  # (B, L, C)
    intra: Correlations  # per layer (B, H, L, L); empty when the branch is off
    inter: Correlations
    grid: tuple[int, int]  # (h, w)


@dataclass
class AnomalyPrediction:
    """anomaly_map (B, H, W) un-smoothed mean over stages; image_score (B,) max of the blurred map."""

    anomaly_map: torch.Tensor
    image_score: torch.Tensor


class FODStage(nn.Module):
    """One stage's transformer; parameter names match the authors' per-stage ``FOD`` module."""

    def __init__(
        self,
        in_channels: int,
        d_model: int,
        n_heads: int,
        depth: int,
        ffn_ratio: int,
        dropout: float,
        with_intra: bool,
        with_inter: bool,
        attention_out_proj: bool,
    ) -> None:
        super().__init__()
        self.with_intra, self.with_inter = with_intra, with_inter
        self.embedding = Embedding2D(in_channels, d_model, dropout)
        if with_inter:
            self.ref_embedding = Embedding2D(in_channels, d_model, dropout)
        layers = [
            EncoderLayer(d_model, n_heads, ffn_ratio * d_model, dropout, attention_out_proj) for _ in range(depth)
        ]
        self.encoder = Encoder(layers, d_model)
        self.projection = nn.Linear(d_model, in_channels)
        self._freeze_unused(with_intra, with_inter, attention_out_proj)
        self._distances: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _freeze_unused(self, with_intra: bool, with_inter: bool, attention_out_proj: bool) -> None:
        """Parameters the forward never uses (kept for the authors' state-dict layout) are frozen, so
        the optimizer skips them and DDP needs no unused-parameter search."""
        for layer in self.encoder.encode_layers:
            unused = (
                []
                if attention_out_proj
                else [layer.self_attention.out_projection, layer.cross_attention.out_projection]
            )
            if with_inter and not with_intra:
                unused.append(layer.self_attention)
            if not with_inter:
                unused.append(layer.cross_attention)
            if not (with_intra or with_inter):
                unused.append(layer.self_attention.sigma_projection)
            for module in unused:
                module.requires_grad_(False)

    def distances(self, grid: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, device)
        if key not in self._distances:
            self._distances[key] = squared_grid_distances(grid, device)
        return self._distances[key]

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], reference: torch.Tensor | None) -> StageOutput:
        """tokens (B, L, C); reference (1, L, C) raw reference tokens (broadcast over the batch)."""
        if tokens.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"{tokens.shape[1]} tokens do not fill a {grid} grid")
        x = self.embedding(tokens, grid)
        ref = self.ref_embedding(reference, grid) if self.with_inter else None
        x, intra, inter = self.encoder(x, ref, self.distances(grid, tokens.device), self.with_intra, self.with_inter)
        return StageOutput(tokens, self.projection(x), intra, inter, grid)


class FOD(nn.Module):
    """Focus the Discrepancy (Yao et al., ICCV 2023) as a pure torch model.

    Args:
        backbone: frozen feature extractor; one transformer is built per returned stage.
        d_models: transformer width per stage (authors: 256, 512).
        n_heads, depth, ffn_ratio, dropout: per-stage transformer shape (8, 3, 4, 0.0).
        with_intra, with_inter: I2Correlation branches (ablations of reference section 2.4).
        attention_out_proj: apply the attention output projection the authors compute but discard.
        score: patch score; ``auto`` follows the authors (inter if the inter branch is on, else intra,
            else reconstruction only).
        blur_sigma: Gaussian sigma (pixels) smoothing the map before the image score (max).
    """

    def __init__(
        self,
        backbone: FeatureExtractor,
        d_models: tuple[int, ...] = (256, 512),
        n_heads: int = 8,
        depth: int = 3,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        with_intra: bool = True,
        with_inter: bool = True,
        attention_out_proj: bool = False,
        score: str = "auto",
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        if len(d_models) != len(backbone.channels):
            raise ConfigError(f"model.d_models has {len(d_models)} widths for {len(backbone.channels)} backbone stages")
        if score not in SCORES:
            raise ConfigError(f"model.score={score!r} is unknown; use one of {SCORES}")
        if score == "auto":
            score = "inter" if with_inter else "intra" if with_intra else "rec"
        if (score == "inter" and not with_inter) or (score == "intra" and not with_intra):
            raise ConfigError(f"model.score={score!r} needs the {score} branch (with_{score}=true)")
        self.score, self.blur_sigma = score, blur_sigma
        self.backbone = backbone
        self.stages = nn.ModuleList(
            FODStage(c, d, n_heads, depth, ffn_ratio, dropout, with_intra, with_inter, attention_out_proj)
            for c, d in zip(backbone.channels, d_models)
        )
        self.reference = ReferenceFeatures(len(self.stages))
        self.with_inter = with_inter

    def pooled_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone maps smoothed by 3x3 average pooling (count_include_pad); each (B, C, h, w)."""
        return [F.avg_pool2d(f, 3, stride=1, padding=1) for f in self.backbone(images)]

    def forward(self, images: torch.Tensor) -> list[StageOutput]:
        """images (B, 3, H, W) normalised -> one StageOutput per stage."""
        outputs = []
        for i, (stage, maps) in enumerate(zip(self.stages, self.pooled_features(images))):
            grid = (maps.shape[2], maps.shape[3])
            tokens = maps.flatten(2).transpose(1, 2)  # (B, L, C) row-major
            reference = self.reference.tokens(i) if self.with_inter else None
            if reference is not None and reference.shape[1] != tokens.shape[1]:
                raise ConfigError(
                    f"reference features of stage {i} have {reference.shape[1]} tokens but the input gives "
                    f"{tokens.shape[1]}: the model was fitted at another image size"
                )
            outputs.append(stage(tokens, grid, reference))
        return outputs

    def patch_scores(self, out: StageOutput) -> torch.Tensor:
        """Anomaly score per patch (B, L): s_rec times the branch score (reference section 5)."""
        s_rec = reconstruction_error(out.reconstruction, out.tokens)
        if self.score == "rec":
            return s_rec
        if self.score == "intra":
            return s_rec * torch.softmax(-patch_discrepancy(out.intra), dim=-1)
        p = torch.softmax(-patch_discrepancy(out.inter), dim=-1)
        return s_rec * (p.max(dim=-1, keepdim=True).values - p)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> AnomalyPrediction:
        """images (B, 3, H, W) -> anomaly map (B, H, W) and image score (B,)."""
        size = images.shape[-2:]
        maps = []
        for out in self.forward(images):
            patch = self.patch_scores(out).view(-1, 1, *out.grid)
            maps.append(F.interpolate(patch, size=size, mode="bilinear", align_corners=True)[:, 0])
        anomaly_map = torch.stack(maps).mean(dim=0)
        image_score = gaussian_blur(anomaly_map, self.blur_sigma).flatten(1).max(dim=1).values
        return AnomalyPrediction(anomaly_map, image_score)
