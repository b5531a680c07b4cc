"""FOD objectives (reference section 3): discrepancies, entropies, reconstruction, two phases."""

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from fod_lightning.models.encoder import Correlations

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


def patch_discrepancy(branch: Correlations) -> torch.Tensor:
    """Layer-averaged KL(C || T) + KL(T || C) per patch (B, L), the scoring discrepancy."""
    per_layer = [
        kl_divergence(c, t) + kl_divergence(t, c) for c, t in zip(branch.correlations, branch.targets, strict=True)
    ]
    return torch.stack(per_layer).mean(dim=0)


def reconstruction_error(reconstruction: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-patch squared error (mean over channels) + 1 - cosine; (B, L, C) pair -> (B, L)."""
    mse = ((reconstruction - tokens) ** 2).mean(dim=-1)
    return mse + 1 - F.cosine_similarity(reconstruction, tokens, dim=-1)


@dataclass
class StageLosses:
    """Loss components of one stage, each a scalar (zero when the branch is off)."""

    rec: torch.Tensor
    intra_corr: torch.Tensor
    intra_tgt: torch.Tensor
    intra_ent: torch.Tensor
    inter_corr: torch.Tensor
    inter_tgt: torch.Tensor
    inter_ent: torch.Tensor

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def _branch_terms(branch: Correlations, zero: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(corr, tgt, ent) averaged over the K layers, with the authors' stop-gradient placement."""
    if not branch.correlations:
        return zero, zero, zero
    k = len(branch.correlations)
    corr = sum(symmetric_discrepancy(t.detach(), c) for c, t in zip(branch.correlations, branch.targets)) / k
    tgt = sum(symmetric_discrepancy(t, c.detach()) for c, t in zip(branch.correlations, branch.targets)) / k
    ent = sum(entropy(c).mean() for c in branch.correlations) / k
    return corr, tgt, ent


def stage_losses(
    reconstruction: torch.Tensor, tokens: torch.Tensor, intra: Correlations, inter: Correlations
) -> StageLosses:
    """All loss components of one stage. reconstruction, tokens (B, L, C)."""
    rec = F.mse_loss(reconstruction, tokens) + (1 - F.cosine_similarity(reconstruction, tokens, dim=-1)).mean()
    zero = rec.new_zeros(())
    return StageLosses(rec, *_branch_terms(intra, zero), *_branch_terms(inter, zero))


def phase_objectives(losses: StageLosses, lambda1: float, lambda2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(target-phase loss1, correlation-phase loss2) of one stage; terms of an off branch are zero.

    loss1 = rec + l1 * intra_tgt - l1 * inter_tgt
    loss2 = rec - l1 * intra_corr - l2 * intra_ent + l1 * inter_corr + l2 * inter_ent
    """
    loss1 = losses.rec + lambda1 * losses.intra_tgt - lambda1 * losses.inter_tgt
    loss2 = (
        losses.rec
        - lambda1 * losses.intra_corr
        - lambda2 * losses.intra_ent
        + lambda1 * losses.inter_corr
        + lambda2 * losses.inter_ent
    )
    return loss1, loss2
