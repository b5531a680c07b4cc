"""Token embedding: 1x1 projection plus a fixed 2-D sine/cosine position code."""

import math

import torch
from torch import nn

from fod_lightning.errors import ConfigError


def sincos_position_code(d_model: int, height: int, width: int) -> torch.Tensor:
    """Fixed 2-D position code of the authors' ``PositionalEmbedding``.

    The first ``d_model / 2`` channels encode the column index with interleaved sin/cos, the last
    ``d_model / 2`` the row index; frequencies ``exp(-2k ln(1e4) / (d_model / 2))``.

    Returns:
        Tensor (height * width, d_model), tokens in row-major order.
    """
    if d_model % 4 != 0:
        raise ConfigError(
            f"model.d_models: widths must be divisible by 4 for the 2-D sin/cos position code, got {d_model}"
        )
    half = d_model // 2
    freq = torch.exp(torch.arange(0.0, half, 2) * -(math.log(1e4) / half))  # (half / 2,)
    cols = torch.arange(0.0, width)[:, None] * freq  # (w, half / 2)
    rows = torch.arange(0.0, height)[:, None] * freq  # (h, half / 2)
    code = torch.zeros(height, width, d_model)
    code[:, :, 0:half:2] = torch.sin(cols)[None, :, :]
    code[:, :, 1:half:2] = torch.cos(cols)[None, :, :]
    code[:, :, half::2] = torch.sin(rows)[:, None, :]
    code[:, :, half + 1 :: 2] = torch.cos(rows)[:, None, :]
    return code.reshape(height * width, d_model)


class ProjectEmbedding(nn.Module):
    """Per-token 1x1 Conv1d from backbone channels to the transformer width (Kaiming-normal init)."""

    def __init__(self, in_channels: int, d_model: int) -> None:
        super().__init__()
        self.project = nn.Conv1d(in_channels, d_model, kernel_size=1)
        nn.init.kaiming_normal_(self.project.weight, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L, D)."""
        return self.project(tokens.transpose(1, 2)).transpose(1, 2)


class Embedding2D(nn.Module):
    """Projection plus position code; the code is rebuilt for whatever grid the input has."""

    def __init__(self, in_channels: int, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.project_embedding = ProjectEmbedding(in_channels, d_model)
        self.dropout = nn.Dropout(dropout)
        self._code_cache: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def position_code(self, grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        key = (grid[0], grid[1], like.device, like.dtype)
        if key not in self._code_cache:
            code = sincos_position_code(self.d_model, *grid)
            self._code_cache[key] = code.to(device=like.device, dtype=like.dtype)
        return self._code_cache[key]

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Embed tokens (B, L, C) laid out row-major on ``grid`` = (h, w), L = h * w -> (B, L, D)."""
        x = self.project_embedding(tokens)
        return self.dropout(x + self.position_code(grid, x))
