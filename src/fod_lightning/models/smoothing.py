"""Gaussian smoothing identical to ``scipy.ndimage.gaussian_filter`` (truncate 4, mode 'reflect')."""

import torch
import torch.nn.functional as F


def _symmetric_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    # scipy 'reflect' repeats the edge sample (d c b a | a b c d); torch's 'reflect' does not.
    n = x.shape[dim]
    if r > n:
        idx = torch.arange(-r, n + r, device=x.device)
        period = 2 * n
        idx = idx % period
        idx = torch.where(idx >= n, period - 1 - idx, idx)
        return x.index_select(dim, idx)
    return torch.cat([x.narrow(dim, 0, r).flip(dim), x, x.narrow(dim, n - r, r).flip(dim)], dim=dim)


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of maps (B, H, W); sigma <= 0 returns the input."""
    if sigma <= 0:
        return maps
    r = int(truncate * sigma + 0.5)
    x = torch.arange(-r, r + 1, device=maps.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    out = maps[:, None]  # (B, 1, H, W)
    out = F.conv2d(_symmetric_pad(out, r, 2), kernel.view(1, 1, -1, 1))
    out = F.conv2d(_symmetric_pad(out, r, 3), kernel.view(1, 1, 1, -1))
    return out[:, 0]
