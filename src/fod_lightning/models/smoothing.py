"""Gaussian smoothing of anomaly maps: with the edge sample repeated at the borders, identical to
``scipy.ndimage.gaussian_filter`` (truncate 4, mode 'reflect'; FOD, as the authors), or mirrored without repeating it,
torch's ``reflect`` padding (the baselines, as anomalib's ``GaussianBlur2d``)."""

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


PADDINGS = ("scipy", "torch")


def _reflect_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """torch's ``reflect`` padding of ``r`` samples along ``dim`` (2: rows, 3: columns) of (B, 1, H, W)."""
    return F.pad(x, (0, 0, r, r) if dim == 2 else (r, r, 0, 0), mode="reflect")


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = 4.0, padding: str = "scipy") -> torch.Tensor:
    """Separable Gaussian blur of maps (B, H, W), radius ``int(truncate * sigma + 0.5)``; sigma <= 0 returns the
    input. ``padding``: ``scipy`` repeats the edge sample (d c b a | a b c d), ``torch`` does not (d c b | a b c d)."""
    if sigma <= 0:
        return maps
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} is unknown; use one of {PADDINGS}")
    pad = _symmetric_pad if padding == "scipy" else _reflect_pad
    r = int(truncate * sigma + 0.5)
    x = torch.arange(-r, r + 1, device=maps.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    out = maps[:, None]  # (B, 1, H, W)
    out = F.conv2d(pad(out, r, 2), kernel.view(1, 1, -1, 1))
    out = F.conv2d(pad(out, r, 3), kernel.view(1, 1, 1, -1))
    return out[:, 0]
