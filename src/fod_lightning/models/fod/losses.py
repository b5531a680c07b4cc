"""FOD objectives (reference section 3): discrepancies, entropies, reconstruction, two phases."""

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from fod_lightning.models.fod.encoder import BranchDiscrepancy


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


def _branch_terms(branch: BranchDiscrepancy, zero: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(corr, tgt, ent) averaged over the K layers, with the authors' stop-gradient placement:
    corr = SD(stopgrad(T), C), tgt = SD(T, stopgrad(C)), ent = Ent(C), each a mean over (b, i)."""
    if not branch.layers:
        return zero, zero, zero
    k = len(branch.layers)
    corr = sum(layer.discrepancy.mean() for layer in branch.layers) / k
    tgt = sum(layer.target_discrepancy.mean() for layer in branch.layers) / k
    ent = sum(layer.entropy.mean() for layer in branch.layers) / k
    return corr, tgt, ent


def stage_losses(
    reconstruction: torch.Tensor, tokens: torch.Tensor, intra: BranchDiscrepancy, inter: BranchDiscrepancy
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


def training_objective(
    losses: StageLosses, loss1: torch.Tensor, loss2: torch.Tensor, correlation: bool
) -> torch.Tensor:
    """The scalar one backward pass minimises for a stage: loss1 + loss2 (their gradients add up as in
    the authors' two backward passes), or L_rec once when neither correlation branch is on (then both
    phase objectives reduce to L_rec, and the authors back-propagate it once)."""
    return loss1 + loss2 if correlation else losses.rec
