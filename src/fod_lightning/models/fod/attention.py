"""I2Correlation attention: softmax correlations plus a learned per-query Gaussian target."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from fod_lightning.errors import ConfigError
from fod_lightning.models.fod.correlation import RowDiscrepancy, fused_correlation
from fod_lightning.models.fod.divergence import entropy, kl_divergence


def squared_grid_distances(grid: tuple[int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared row and column distances between all token pairs of a row-major (h, w) grid.

    Returns:
        (dy2, dx2), each (L, L) float32 with L = h * w; token i sits at (i // w, i % w).
    """
    h, w = grid
    rows = torch.arange(h, device=device).repeat_interleave(w).float()  # (L,)
    cols = torch.arange(w, device=device).repeat(h).float()  # (L,)
    dy2 = (rows[:, None] - rows[None, :]) ** 2
    dx2 = (cols[:, None] - cols[None, :]) ** 2
    return dy2, dx2


def sigma_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """The authors' sigma parametrisation: s = sigmoid(5 x) + 1e-5, sigma = 3^s - 1, in (~1e-5, ~2]."""
    s = torch.sigmoid(5 * logits) + 1e-5
    return torch.pow(3, s) - 1


def gaussian_target(sigma: torch.Tensor, dy2: torch.Tensor, dx2: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gaussian prior centred on each query token.

    Args:
        sigma: (B, H, L, 2) per-query (sigma_y, sigma_x).
        dy2, dx2: (L, S) squared row / column grid distances.

    Returns:
        (B, H, L, S), rows sum to 1. Equals the authors' ``1/(2 pi sy sx) exp(...)`` divided by its row
        sum (the prefactor cancels); computed as a softmax of the exponent for numerical safety.
    """
    sigma_y = sigma[..., 0:1]  # (B, H, L, 1)
    sigma_x = sigma[..., 1:2]
    exponent = -dy2 / (2 * sigma_y**2) - dx2 / (2 * sigma_x**2)  # (B, H, L, S)
    return torch.softmax(exponent, dim=-1)


class CorrelationAttention(nn.Module):
    """The authors' ``Attention2D`` with its state-dict names.

    Args:
        d_model: width D; split into ``n_heads`` heads of D / H.
        n_heads: H.
        out_proj: apply ``out_projection`` to the attention output. The authors compute it and discard
            the result, so ``False`` (no projection) is the faithful default.
        dropout: dropout on the correlation map (0 in the paper). While it is active (training with
            dropout > 0) the correlation is materialised and, as the authors do, the losses see the
            correlation after dropout; otherwise the lean fused path computes the same values.
        block_elements: temporaries per block of the fused path (None: chosen by device).
        compiled: run the fused path's block kernels through torch.compile.
        keep_mib: while training, MiB of the fused path's logarithms kept per call for its backward pass (the same
            gradients, fewer logarithms recomputed); 0: all recomputed.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        out_proj: bool = False,
        dropout: float = 0.0,
        block_elements: int | None = None,
        compiled: bool = False,
        keep_mib: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ConfigError(f"model.d_models: width {d_model} is not divisible by model.n_heads={n_heads}")
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(d_model // n_heads)
        self.apply_out_proj = out_proj
        self.block_elements, self.compiled = block_elements, compiled
        self.keep_bytes = int(keep_mib * 2**20)
        self.fused = True  # False: always the materialised path (plain tensor operations, for export)
        self.query_projection = nn.Linear(d_model, d_model)
        self.key_projection = nn.Linear(d_model, d_model)
        self.value_projection = nn.Linear(d_model, d_model)
        self.sigma_projection = nn.Linear(d_model, 2 * n_heads)
        self.out_projection = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.last_sigma_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        offsets: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, RowDiscrepancy | None]:
        """Attend from ``query`` (B, L, D) to ``key_value`` (B or 1, S, D).

        Args:
            offsets: :func:`grid_offsets` of the token grid ((L, h), (L, w)); ``None`` gives plain
                attention without the sigma head and the target (and without statistics).

        Returns:
            out (B, L, D) and the per-query :class:`RowDiscrepancy` (``None`` when ``offsets`` is).
        """
        b, length, d = query.shape
        h = self.n_heads
        q = self.query_projection(query).view(b, length, h, d // h).transpose(1, 2)  # (B, H, L, E)
        k = self.key_projection(key_value).view(key_value.shape[0], -1, h, d // h).transpose(1, 2)  # (B|1, H, S, E)
        v = self.value_projection(key_value).view(key_value.shape[0], -1, h, d // h).transpose(1, 2)
        if offsets is None:
            p = self.dropout.p if self.training else 0.0
            out, stats = F.scaled_dot_product_attention(q, k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1),
                                                        dropout_p=p), None  # fmt: skip
        else:
            sigma = self.sigma(query)  # (B, H, L, 2)
            # Diagnostic only (detached): mean and std of sigma_y, sigma_x in the last forward, for logging.
            flat = sigma.detach().reshape(-1, 2)
            self.last_sigma_stats = (flat.mean(dim=0), flat.std(dim=0))
            if not self.fused or (self.training and self.dropout.p > 0):
                out, stats = self._materialised(q, k, v, sigma, offsets)
            else:
                inv = 1.0 / (2 * sigma.to(torch.promote_types(sigma.dtype, torch.float32)) ** 2)  # (B, H, L, 2)
                out, stats = fused_correlation(self.scale * q, k, v, inv[..., 0], inv[..., 1], offsets,
                                               self.block_elements, self.compiled, self.keep_bytes)  # fmt: skip
            out = out.to(v.dtype)
        out = out.transpose(1, 2).reshape(b, length, d)
        if self.apply_out_proj:
            out = self.out_projection(out)
        return out, stats

    def _materialised(self, q, k, v, sigma, offsets) -> tuple[torch.Tensor, RowDiscrepancy]:
        """The straightforward path with full (B, H, L, S) tensors; the losses see C after dropout."""
        grid = (offsets[0].shape[1], offsets[1].shape[1])
        correlation = self.dropout(torch.softmax(self.scale * (q @ k.transpose(-1, -2)), dim=-1))
        target = gaussian_target(sigma, *squared_grid_distances(grid, q.device))
        c_fixed, t_fixed = correlation.detach(), target.detach()
        stats = RowDiscrepancy(
            discrepancy=kl_divergence(t_fixed, correlation) + kl_divergence(correlation, t_fixed),
            target_discrepancy=kl_divergence(target, c_fixed) + kl_divergence(c_fixed, target),
            entropy=entropy(correlation),
        )
        return correlation @ v, stats

    def correlation_maps(
        self, query: torch.Tensor, key_value: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Materialised correlation C and row-normalised target T, each (B, H, L, S), by the
        straightforward formulas (no dropout); for diagnostics and tests, not used by training."""
        b, length, d = query.shape
        h = self.n_heads
        q = self.query_projection(query).view(b, length, h, d // h).transpose(1, 2)
        k = self.key_projection(key_value).view(key_value.shape[0], -1, h, d // h).transpose(1, 2)
        correlation = torch.softmax(self.scale * (q @ k.transpose(-1, -2)), dim=-1)
        return correlation, gaussian_target(self.sigma(query), *squared_grid_distances(grid, query.device))

    def sigma(self, query: torch.Tensor) -> torch.Tensor:
        """Per-query sigmas (B, H, L, 2): (sigma_y, sigma_x)."""
        b, length, _ = query.shape
        logits = self.sigma_projection(query).view(b, length, self.n_heads, 2).transpose(1, 2)
        return sigma_from_logits(logits)
