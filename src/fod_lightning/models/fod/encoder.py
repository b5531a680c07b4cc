"""Encoder layer with the intra (self) and inter (cross to reference) correlation branches."""

from dataclasses import dataclass, field

import torch
from torch import nn

from fod_lightning.models.fod.attention import CorrelationAttention
from fod_lightning.models.fod.correlation import RowDiscrepancy

BRANCHES = frozenset({"intra", "inter"})  # the correlation branches whose row statistics can be asked for
Offsets = tuple[torch.Tensor, torch.Tensor]  # squared grid offsets ((L, h), (L, w)) of the Gaussian targets
Rows = RowDiscrepancy | None  # a branch's row statistics of one layer, None when not computed


class Mlp(nn.Module):
    """FFN: Linear(D, 4D) -> GELU -> Linear(4D, D) -> Dropout."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


@dataclass
class BranchDiscrepancy:
    """Per-layer row statistics of one branch, each (B, L) (see :class:`RowDiscrepancy`); empty when
    the branch is off or its statistics were not asked for."""

    layers: list[RowDiscrepancy] = field(default_factory=list)


@dataclass(frozen=True)
class LayerSettings:
    """What every encoder layer of a stage is built with: width, heads, FFN width, dropout, whether the attention
    output projection is applied, the fused correlation's block size, compilation and kept logarithms (MiB per
    call), and the branches that run."""

    d_model: int
    n_heads: int
    ffn_hidden: int
    dropout: float = 0.0
    out_proj: bool = False
    block_elements: int | None = None
    compiled: bool = False
    with_intra: bool = True
    with_inter: bool = True
    keep_mib: float = 0.0


class EncoderLayer(nn.Module):
    """One I2Correlation layer: fused = intra_out - inter_out, then post-norm FFN block.

    With both branches the residual input cancels: (x + intra) - (x + inter) = intra - inter.
    Ablations follow the authors: inter only x + inter, intra only x + intra, neither plain
    self-attention x + attn without targets.
    """

    def __init__(self, s: LayerSettings) -> None:
        super().__init__()
        self.with_intra, self.with_inter = s.with_intra, s.with_inter
        attention = (s.d_model, s.n_heads, s.out_proj, s.dropout, s.block_elements, s.compiled, s.keep_mib)
        self.self_attention = CorrelationAttention(*attention)
        self.cross_attention = CorrelationAttention(*attention)
        self.ffn = Mlp(s.d_model, s.ffn_hidden, s.dropout)
        self.norm1 = nn.LayerNorm(s.d_model)
        self.norm2 = nn.LayerNorm(s.d_model)
        self.dropout = nn.Dropout(s.dropout)

    def forward(self, x: torch.Tensor, reference: torch.Tensor | None, offsets: Offsets,
                statistics: frozenset[str] = BRANCHES) -> tuple[torch.Tensor, Rows, Rows]:  # fmt: skip
        """x (B, L, D), reference (1|B, L, D) embedded reference tokens; ``statistics`` names the branches
        whose row statistics are needed (the others run as plain attention when that is exact).

        Returns:
            out (B, L, D), intra and inter statistics (or None).
        """
        with_intra, with_inter = self.with_intra, self.with_inter
        intra = inter = None
        if with_intra or not with_inter:
            wanted = with_intra and "intra" in statistics
            intra_out, intra = self.self_attention(x, x, offsets if wanted else None)
        if with_inter:
            wanted = "inter" in statistics
            inter_out, inter = self.cross_attention(x, reference, offsets if wanted else None)
        if with_intra and with_inter:
            fused = (x + self.dropout(intra_out)) - (x + self.dropout(inter_out))
        elif with_inter:
            fused = x + self.dropout(inter_out)
        else:
            fused = x + self.dropout(intra_out)
        z = self.norm1(fused)
        out = self.norm2(z + self.ffn(z))
        return out, intra, inter


class Encoder(nn.Module):
    """K encoder layers and a final LayerNorm."""

    def __init__(self, layers: list[EncoderLayer], d_model: int) -> None:
        super().__init__()
        self.encode_layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, reference: torch.Tensor | None, offsets: Offsets, statistics: frozenset[str] = BRANCHES
    ) -> tuple[torch.Tensor, BranchDiscrepancy, BranchDiscrepancy]:
        intra, inter = BranchDiscrepancy(), BranchDiscrepancy()
        for layer in self.encode_layers:
            x, intra_stats, inter_stats = layer(x, reference, offsets, statistics)
            for branch, stats in ((intra, intra_stats), (inter, inter_stats)):
                if stats is not None:
                    branch.layers.append(stats)
        return self.norm(x), intra, inter
