"""KL divergence and entropy of row distributions, as the authors define them (eps inside the logs).

These are the straightforward formulas on materialised (B, H, L, S) tensors. The training and scoring
paths use the fused row reductions of :mod:`fod_lightning.models.fod.correlation`, which equal them; these
remain for tests, ablations with dropout and the benchmark's baseline.
"""

import torch

EPS = 1e-4


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Head-averaged KL(P || Q) per query; p, q (B, H, L, S) row distributions -> (B, L)."""
    return (p * (torch.log(p + eps) - torch.log(q + eps))).sum(dim=-1).mean(dim=1)


def entropy(p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Head-averaged entropy per query; p (B, H, L, S) -> (B, L)."""
    return -(p * torch.log(p + eps)).sum(dim=-1).mean(dim=1)


def symmetric_discrepancy(target: torch.Tensor, correlation: torch.Tensor) -> torch.Tensor:
    """SD(T, C) = mean KL(T || C) + mean KL(C || T), a scalar."""
    return kl_divergence(target, correlation).mean() + kl_divergence(correlation, target).mean()
