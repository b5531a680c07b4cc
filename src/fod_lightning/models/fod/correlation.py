"""Lean I2Correlation: attention output and per-query discrepancy/entropy without stored L x S tensors.

For one attention module with correlation C = softmax(Q K^T / sqrt(E)) and the row-normalised Gaussian
target T (reference section 2.1), training and scoring need only row reductions of C and T:

    SD_i  = KL(T_i || C_i) + KL(C_i || T_i) = sum_j (C_ij - T_ij) (log(C_ij + eps) - log(T_ij + eps))
    Ent_i = -sum_j C_ij log(C_ij + eps)

and the output C V. :class:`FusedCorrelation` computes them in blocks of query rows and recomputes the
blocks in the backward pass (as FlashAttention does), so memory grows with L, not L x S. Within a budget per call
(``keep_bytes``) it keeps each block's two logarithm tensors, log(C + eps) and d = log(C + eps) - log(T + eps),
for the backward pass, which then recomputes only C and T: the same values, fewer logarithms. The Gaussian
target is separable on the token grid: T_ij = Y_i[row_j] X_i[col_j] with Y, X normalised Gaussians over
the grid's rows and columns, so it costs O(L (h + w)) exponentials instead of O(L S).

The authors' stop-gradients (target phase vs correlation phase, reference section 3) are kept by
returning SD twice: ``discrepancy`` sends its gradient into C only, ``target_discrepancy`` into T only.
"""

from dataclasses import dataclass
from functools import cache

import torch

from fod_lightning.models.fod.divergence import EPS

CPU_BLOCK_ELEMENTS = 1 << 19  # a block of B*H*rows*S floats per temporary: cache-sized on a CPU
GPU_BLOCK_ELEMENTS = 1 << 26  # few, large blocks on a GPU (kernel launches dominate small ones)


@dataclass
class RowDiscrepancy:
    """Per-query statistics of one I2Correlation module, head-averaged, each (B, L).

    ``discrepancy`` and ``target_discrepancy`` hold the same values; gradients of the first reach
    the correlation (Q, K), of the second the target (the sigma head), as the authors' detach() does.
    """

    discrepancy: torch.Tensor
    target_discrepancy: torch.Tensor
    entropy: torch.Tensor


def grid_offsets(grid: tuple[int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared row and column offsets of every token of a row-major (h, w) grid to every grid row/column.

    Returns:
        (dy2 (L, h), dx2 (L, w)), float32: dy2[i, r] = (i // w - r)^2, dx2[i, c] = (i % w - c)^2.
    """
    h, w = grid
    rows = torch.arange(h, device=device, dtype=torch.float32)
    cols = torch.arange(w, device=device, dtype=torch.float32)
    dy2 = (rows[:, None] - rows[None, :]) ** 2  # (h, h)
    dx2 = (cols[:, None] - cols[None, :]) ** 2  # (w, w)
    return dy2.repeat_interleave(w, dim=0), dx2.repeat(h, 1)


def gaussian_rows(inv_y: torch.Tensor, inv_x: torch.Tensor, dy2: torch.Tensor, dx2: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gaussian target of a block of queries.

    Args:
        inv_y, inv_x: (B, H, r) = 1 / (2 sigma^2) per query, rows and columns.
        dy2, dx2: (r, h), (r, w) squared offsets of these queries (see :func:`grid_offsets`).

    Returns:
        (B, H, r, h * w), each row sums to 1. The exponents are <= 0 and 0 at the query's own
        row/column, so the normalisers are >= 1.
    """
    y = torch.exp(-inv_y[..., None] * dy2)
    y = y / y.sum(dim=-1, keepdim=True)
    x = torch.exp(-inv_x[..., None] * dx2)
    x = x / x.sum(dim=-1, keepdim=True)
    return (y[..., :, None] * x[..., None, :]).flatten(-2)


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_j a_ij b_ij over the last dimension: eagerly an einsum (no temporary of a's size); under
    torch.compile a product and sum, which the compiler fuses into one reduction."""
    if torch.compiler.is_compiling():
        return (a * b).sum(dim=-1)
    return torch.einsum("...j,...j->...", a, b)


def forward_block(q, k, v, inv_y, inv_x, dy2, dx2, eps: float = EPS, keep: bool = False):
    """One block of query rows: q (B, H, r, E) pre-scaled, k, v (B|1, H, S, E).

    Returns out (B, H, r, E), SD (B, H, r), Ent (B, H, r), and with ``keep`` (log(C + eps), d), each
    (B, H, r, S), for :func:`backward_block`.
    """
    c = torch.softmax(q @ k.transpose(-1, -2), dim=-1)  # (B, H, r, S)
    out = c @ v
    t = gaussian_rows(inv_y, inv_x, dy2, dx2)
    log_c = (c + eps).log_()
    d = (t + eps).log_().neg_().add_(log_c)  # log(C + eps) - log(T + eps)
    sd = _rowdot(c, d) - _rowdot(t, d)
    ent = -_rowdot(c, log_c)
    return (out, sd, ent, (log_c, d)) if keep else (out, sd, ent)


def backward_block(q, k, v, inv_y, inv_x, dy2, dx2, g_out, g_sd, g_sd_target, g_ent, eps: float = EPS,
                   kept: tuple[torch.Tensor, torch.Tensor] | None = None):  # fmt: skip
    """Gradients of one block (recomputing C and T, and the logarithms unless ``kept`` by forward_block);
    g_* are the upstream gradients of forward_block's outputs, g_sd / g_sd_target of SD through C / through T.

    Returns dq (B, H, r, E), dk, dv (B, H, S, E), d_inv_y, d_inv_x (B, H, r).
    """
    h, w = dy2.shape[-1], dx2.shape[-1]
    c = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    t = gaussian_rows(inv_y, inv_x, dy2, dx2)
    if kept is not None:
        log_c, d = kept
    else:
        log_c = (c + eps).log_()
        d = (t + eps).log_().neg_().add_(log_c)  # log(C + eps) - log(T + eps)
    a, e = g_sd[..., None], g_ent[..., None]
    # dSD/dC = d + (C - T) / (C + eps);  dEnt/dC = -(log(C + eps) + C / (C + eps))
    g_c = g_out @ v.transpose(-1, -2)
    g_c.addcmul_(a, d).addcmul_(e, log_c, value=-1)
    g_c.addcdiv_((c * (a - e)).addcmul_(a, t, value=-1), c + eps)
    g_scores = g_c.sub_(_rowdot(c, g_c)[..., None]).mul_(c)  # softmax backward
    dq = g_scores @ k
    dk = g_scores.transpose(-1, -2) @ q
    dv = c.transpose(-1, -2) @ g_out
    # dSD/dT = (T - C) / (T + eps) - d; T is a softmax of the exponent -inv_y dy2 - inv_x dx2
    g_t = (t - c).div_(t + eps).sub_(d)
    g_exp = g_t.sub_(_rowdot(t, g_t)[..., None]).mul_(t).unflatten(-1, (h, w))
    d_inv_y = -_rowdot(g_exp.sum(dim=-1), dy2) * g_sd_target
    d_inv_x = -_rowdot(g_exp.sum(dim=-2), dx2) * g_sd_target
    return dq, dk, dv, d_inv_y, d_inv_x


@cache
def compiled_blocks():
    """torch.compile'd block kernels (fused loops on CPU, Triton on GPU); compiled once per process."""
    return torch.compile(forward_block, dynamic=False), torch.compile(backward_block, dynamic=False)


def _sum_to(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x.sum(dim=0, keepdim=True) if batch == 1 and x.shape[0] != 1 else x


def blocks(batch: int, length: int, block_rows: int, per_image: bool) -> list[tuple[slice, slice]]:
    """(images, query rows) of each block: all images together, or (``per_image``) one image at a time."""
    images = [slice(i, i + 1) for i in range(batch)] if per_image else [slice(None)]
    return [(image, slice(r, r + block_rows)) for image in images for r in range(0, length, block_rows)]


class FusedCorrelation(torch.autograd.Function):
    """(out, SD through C, SD through T, Ent) of I2Correlation, blockwise over query rows (and images)."""

    @staticmethod
    def forward(ctx, q, k, v, inv_y, inv_x, dy2, dx2, block_rows: int, compiled: bool, per_image: bool,
                keep_bytes: int):  # fmt: skip
        fwd = compiled_blocks()[0] if compiled else forward_block
        b, heads, length, _ = q.shape
        out = q.new_empty(b, heads, length, v.shape[-1])
        sd = q.new_empty(b, heads, length)
        ent = q.new_empty(b, heads, length)
        # the blocks' logarithms kept for the backward pass, within keep_bytes
        budget = keep_bytes if any(ctx.needs_input_grad[:5]) else 0
        kept = []
        for image, rows in blocks(b, length, block_rows, per_image):
            args = (q[image, :, rows], k, v, inv_y[image, :, rows], inv_x[image, :, rows], dy2[rows], dx2[rows])
            block_bytes = 2 * args[0].shape[:-1].numel() * k.shape[2] * q.element_size()
            keep = block_bytes <= budget
            budget -= block_bytes if keep else 0
            results = fwd(*args, keep=keep)
            out[image, :, rows], sd[image, :, rows], ent[image, :, rows] = results[:3]
            kept.append(results[3] if keep else None)
        ctx.save_for_backward(q, k, v, inv_y, inv_x, dy2, dx2)
        ctx.block_rows, ctx.compiled, ctx.per_image, ctx.kept = block_rows, compiled, per_image, kept
        return out, sd, sd.clone(), ent

    @staticmethod
    def backward(ctx, g_out, g_sd, g_sd_target, g_ent):
        q, k, v, inv_y, inv_x, dy2, dx2 = ctx.saved_tensors
        bwd = compiled_blocks()[1] if ctx.compiled else backward_block
        dq, d_inv_y, d_inv_x = torch.empty_like(q), torch.empty_like(inv_y), torch.empty_like(inv_x)
        dk, dv = torch.zeros_like(k), torch.zeros_like(v)
        parts = blocks(q.shape[0], q.shape[2], ctx.block_rows, ctx.per_image)
        kept, ctx.kept = ctx.kept or [None] * len(parts), None  # freed now; a second backward recomputes them
        for (image, rows), logs in zip(parts, kept):
            args = (
                q[image, :, rows],
                k,
                v,
                inv_y[image, :, rows],
                inv_x[image, :, rows],
                dy2[rows],
                dx2[rows],
                g_out[image, :, rows],
                g_sd[image, :, rows],
                g_sd_target[image, :, rows],
                g_ent[image, :, rows],
            )
            dq_b, dk_b, dv_b, d_inv_y[image, :, rows], d_inv_x[image, :, rows] = bwd(*args, kept=logs)
            dq[image, :, rows] = dq_b
            dk += _sum_to(dk_b, k.shape[0])
            dv += _sum_to(dv_b, v.shape[0])
        return dq, dk, dv, d_inv_y, d_inv_x, None, None, None, None, None, None


def block_rows_for(q: torch.Tensor, keys: int, block_elements: int | None, images: int | None = None) -> int:
    """Query rows per block so that one (images, H, rows, S) temporary holds about ``block_elements`` floats
    (``images``: per block, None: the whole batch)."""
    if block_elements is None:
        block_elements = GPU_BLOCK_ELEMENTS if q.is_cuda else CPU_BLOCK_ELEMENTS
    images = q.shape[0] if images is None else images
    return max(1, min(q.shape[2], block_elements // (images * q.shape[1] * keys)))


def fused_correlation(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    inv_y: torch.Tensor,
    inv_x: torch.Tensor,
    offsets: tuple[torch.Tensor, torch.Tensor],
    block_elements: int | None = None,
    compiled: bool = False,
    keep_bytes: int = 0,
) -> tuple[torch.Tensor, RowDiscrepancy]:
    """Attention output and row statistics of I2Correlation in float32 (float64 inputs stay float64),
    whatever autocast says.

    Args:
        q: (B, H, L, E) queries, already scaled by 1 / sqrt(E).
        k, v: (B or 1, H, S, E) keys and values (1 broadcasts one reference over the batch).
        inv_y, inv_x: (B, H, L) = 1 / (2 sigma^2) of each query's Gaussian target.
        offsets: :func:`grid_offsets` of the token grid, (L, h) and (L, w); S = L = h * w.
        block_elements: size of a block's temporaries (None: by device).
        compiled: use the torch.compile'd block kernels.
        keep_bytes: while gradients are needed, keep up to this many bytes of the blocks' logarithms for the
            backward pass (the same gradients; fewer logarithms recomputed). 0: recompute everything.

    Returns:
        out (B, H, L, E) and the head-averaged :class:`RowDiscrepancy`.
    """
    # One reference broadcast over a batch on a CPU: a block of all images would copy the expanded keys and values
    # for every block (most of the scoring time at batch 8); one image per block reads them in place.
    per_image = k.shape[0] == 1 and q.shape[0] > 1 and not q.is_cuda
    rows = block_rows_for(q, k.shape[2], block_elements, 1 if per_image else None)
    with torch.autocast(q.device.type, enabled=False):
        dtype = torch.promote_types(q.dtype, torch.float32)
        args = (t.to(dtype) for t in (q, k, v, inv_y, inv_x, *offsets))
        out, sd, sd_target, ent = FusedCorrelation.apply(*args, rows, compiled, per_image, keep_bytes)
    return out, RowDiscrepancy(sd.mean(dim=1), sd_target.mean(dim=1), ent.mean(dim=1))
