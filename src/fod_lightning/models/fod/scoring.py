"""Anomaly scoring (reference section 5): patch scores per stage, stage mean, upsampling, blur, image score."""

import torch
import torch.nn.functional as F

from fod_lightning.models.fod.encoder import BranchDiscrepancy
from fod_lightning.models.smoothing import gaussian_blur

SCORES = ("auto", "inter", "intra", "rec")


def reconstruction_error(reconstruction: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-patch squared error (mean over channels) + 1 - cosine; (B, L, C) pair -> (B, L)."""
    mse = ((reconstruction - tokens) ** 2).mean(dim=-1)
    return mse + 1 - F.cosine_similarity(reconstruction, tokens, dim=-1)


def patch_discrepancy(branch: BranchDiscrepancy) -> torch.Tensor:
    """Layer-averaged KL(C || T) + KL(T || C) per patch (B, L), the scoring discrepancy."""
    return torch.stack([layer.discrepancy for layer in branch.layers]).mean(dim=0)


def patch_scores(
    score: str, reconstruction: torch.Tensor, tokens: torch.Tensor, intra: BranchDiscrepancy, inter: BranchDiscrepancy
) -> torch.Tensor:
    """Anomaly score per patch (B, L): s_rec times the branch score.

    ``inter``: s_rec * (max - softmax(-d_inter)) (the authors' default); ``intra``: s_rec *
    softmax(-d_intra); ``rec``: s_rec alone. Softmax and max run over the L patches of each image.
    """
    s_rec = reconstruction_error(reconstruction, tokens)
    if score == "rec":
        return s_rec
    if score == "intra":
        return s_rec * torch.softmax(-patch_discrepancy(intra), dim=-1)
    p = torch.softmax(-patch_discrepancy(inter), dim=-1)
    return s_rec * (p.max(dim=-1, keepdim=True).values - p)


STAGE_MIXES = ("mean", "geometric")
TINY = 1e-12  # floor of the geometric mean's logarithm (a patch score of 0 stays about 0)


def anomaly_map(patch_maps: list[torch.Tensor], size: tuple[int, int], mix: str = "mean") -> torch.Tensor:
    """The stages' patch maps (B, h_s, w_s), each upsampled bilinearly (align_corners) to ``size``, combined into
    (B, H, W): their arithmetic ``mean`` (the authors'), or their ``geometric`` mean, which leaves each stage's scale
    out (a stage whose scores grow cannot outweigh the others)."""
    up = torch.stack([F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
                      for m in patch_maps])  # fmt: skip
    if mix == "geometric":
        return up.clamp_min(TINY).log().mean(dim=0).exp()
    return up.mean(dim=0)


def image_scores(anomaly_maps: torch.Tensor, blur_sigma: float) -> torch.Tensor:
    """Image score (B,): max of the map (B, H, W) after a Gaussian blur of ``blur_sigma`` pixels."""
    return gaussian_blur(anomaly_maps, blur_sigma).flatten(1).max(dim=1).values
