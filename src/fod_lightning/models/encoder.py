"""Encoder layer with the intra (self) and inter (cross to reference) correlation branches."""

from dataclasses import dataclass, field

import torch
from torch import nn

from fod_lightning.models.attention import CorrelationAttention


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
class Correlations:
    """Per-layer correlations and row-normalised targets of one branch, each (B, H, L, S)."""

    correlations: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)


class EncoderLayer(nn.Module):
    """One I2Correlation layer: fused = intra_out - inter_out, then post-norm FFN block.

    With both branches the residual input cancels: (x + intra) - (x + inter) = intra - inter.
    Ablations follow the authors: inter only x + inter, intra only x + intra, neither plain
    self-attention x + attn without targets.
    """

    def __init__(self, d_model: int, n_heads: int, ffn_hidden: int, dropout: float, out_proj: bool) -> None:
        super().__init__()
        self.self_attention = CorrelationAttention(d_model, n_heads, out_proj, dropout)
        self.cross_attention = CorrelationAttention(d_model, n_heads, out_proj, dropout)
        self.ffn = Mlp(d_model, ffn_hidden, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        reference: torch.Tensor | None,
        distances: tuple[torch.Tensor, torch.Tensor],
        with_intra: bool,
        with_inter: bool,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """x (B, L, D), reference (1|B, L, D) embedded reference tokens.

        Returns:
            out (B, L, D), (intra corr, intra target) or None, (inter corr, inter target) or None.
        """
        intra = inter = None
        if with_intra or not with_inter:
            intra_out, *intra = self.self_attention(x, x, distances if with_intra else None)
        if with_inter:
            inter_out, *inter = self.cross_attention(x, reference, distances)
        if with_intra and with_inter:
            fused = (x + self.dropout(intra_out)) - (x + self.dropout(inter_out))
        elif with_inter:
            fused = x + self.dropout(inter_out)
        else:
            fused = x + self.dropout(intra_out)
        z = self.norm1(fused)
        out = self.norm2(z + self.ffn(z))
        return out, (tuple(intra) if with_intra else None), (tuple(inter) if with_inter else None)


class Encoder(nn.Module):
    """K encoder layers and a final LayerNorm."""

    def __init__(self, layers: list[EncoderLayer], d_model: int) -> None:
        super().__init__()
        self.encode_layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        x: torch.Tensor,
        reference: torch.Tensor | None,
        distances: tuple[torch.Tensor, torch.Tensor],
        with_intra: bool,
        with_inter: bool,
    ) -> tuple[torch.Tensor, Correlations, Correlations]:
        intra, inter = Correlations(), Correlations()
        for layer in self.encode_layers:
            x, intra_pair, inter_pair = layer(x, reference, distances, with_intra, with_inter)
            for branch, pair in ((intra, intra_pair), (inter, inter_pair)):
                if pair is not None:
                    branch.correlations.append(pair[0])
                    branch.targets.append(pair[1])
        return self.norm(x), intra, inter
