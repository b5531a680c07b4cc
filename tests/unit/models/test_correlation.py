"""The lean fused I2Correlation against the straightforward formulas (float64 reference, 1e-5 relative)."""

import pytest
import torch

from fod_lightning.models.fod.attention import CorrelationAttention, gaussian_target, squared_grid_distances
from fod_lightning.models.fod.correlation import block_rows_for, fused_correlation, grid_offsets
from fod_lightning.models.fod.divergence import entropy, kl_divergence
from fod_lightning.models.fod.losses import phase_objectives, stage_losses
from fod_lightning.models.fod.model import FODStage

GRID = (5, 6)


def reference_outputs(att: CorrelationAttention, query, key_value, grid):
    """out, SD through C, SD through T and Ent by the straightforward formulas on full (B, H, L, S) maps."""
    b, length, d = query.shape
    h = att.n_heads
    q = att.query_projection(query).view(b, length, h, -1).transpose(1, 2)
    k = att.key_projection(key_value).view(key_value.shape[0], -1, h, d // h).transpose(1, 2)
    v = att.value_projection(key_value).view(key_value.shape[0], -1, h, d // h).transpose(1, 2)
    c = torch.softmax(att.scale * q @ k.transpose(-1, -2), dim=-1)
    t = gaussian_target(att.sigma(query), *squared_grid_distances(grid))
    out = (c @ v).transpose(1, 2).reshape(b, length, d)
    sd_c = kl_divergence(t.detach(), c) + kl_divergence(c, t.detach())
    sd_t = kl_divergence(t, c.detach()) + kl_divergence(c.detach(), t)
    return out, sd_c, sd_t, entropy(c)


def make_inputs(batch, ref_batch, d=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    length = GRID[0] * GRID[1]
    query = torch.randn(batch, length, d, generator=g, dtype=dtype, requires_grad=True)
    key_value = torch.randn(ref_batch, length, d, generator=g, dtype=dtype, requires_grad=True)
    return query, key_value


def weighted_sum(outputs, weights):
    return sum((o * w).sum() for o, w in zip(outputs, weights))


def assert_matches_float64_reference(att: CorrelationAttention, batch: int, ref_batch: int, device="cpu"):
    """Values and gradients of the fused path (float32, on ``device``) against the float64 formulas."""
    query, key_value = make_inputs(batch, ref_batch)
    att64 = CorrelationAttention(16, 4).double()
    att64.load_state_dict(att.state_dict())
    q64, kv64 = (x.detach().double().requires_grad_() for x in (query, key_value))
    expected = reference_outputs(att64, q64, kv64, GRID)

    att = att.to(device)
    q32, kv32 = (x.detach().to(device).requires_grad_() for x in (query, key_value))
    out, stats = att(q32, kv32, grid_offsets(GRID, device))
    ours = (out, stats.discrepancy, stats.target_discrepancy, stats.entropy)
    for a, e in zip(ours, expected):
        torch.testing.assert_close(a.double().cpu(), e, rtol=1e-5, atol=1e-6)

    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(e.shape, generator=g, dtype=torch.float64) for e in expected]
    params = [q32, kv32, *att.parameters()]
    params64 = [q64, kv64, *att64.parameters()]
    grads = torch.autograd.grad(weighted_sum(ours, [w.float().to(device) for w in weights]), params, allow_unused=True)
    grads64 = torch.autograd.grad(weighted_sum(expected, weights), params64, allow_unused=True)
    for name, a, e in zip(["query", "key_value", *(n for n, _ in att.named_parameters())], grads, grads64):
        if e is None:  # out_projection: used by neither
            assert a is None, name
            continue
        if name == "key_projection.bias":  # softmax cancels it: the true gradient is 0, ours float32 rounding
            assert a.abs().max() < 1e-5
            continue
        scale = e.abs().max().clamp_min(1e-12)
        assert (a.double().cpu() - e).abs().max() / scale < 1e-5, name


@pytest.mark.parametrize("block_elements", [None, 7 * 4 * GRID[0] * GRID[1]])  # one block; ragged blocks
@pytest.mark.parametrize(("batch", "ref_batch"), [(3, 3), (3, 1)])
def test_fused_path_equals_the_straightforward_formulas_in_float32(block_elements, batch, ref_batch):
    torch.manual_seed(0)
    assert_matches_float64_reference(CorrelationAttention(16, 4, block_elements=block_elements), batch, ref_batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compiled", [False, True])
def test_fused_path_on_a_gpu_equals_the_straightforward_formulas(compiled):
    torch.manual_seed(0)
    att = CorrelationAttention(16, 4, block_elements=7 * 4 * GRID[0] * GRID[1], compiled=compiled)
    assert_matches_float64_reference(att, 3, 1, device="cuda")


def test_stop_gradients_route_each_discrepancy_to_its_side():
    torch.manual_seed(0)
    att = CorrelationAttention(16, 4)
    query, key_value = make_inputs(2, 1)
    _, stats = att(query, key_value, grid_offsets(GRID))
    params = dict(att.named_parameters())

    def reached(value):
        grads = torch.autograd.grad(value.sum(), list(params.values()), retain_graph=True, allow_unused=True)
        return {n.split("_")[0] for n, gr in zip(params, grads) if gr is not None and gr.abs().max() > 0}

    assert reached(stats.discrepancy) == {"query", "key"}
    assert reached(stats.entropy) == {"query", "key"}
    assert reached(stats.target_discrepancy) == {"sigma"}
    torch.testing.assert_close(stats.discrepancy, stats.target_discrepancy)


def test_materialised_path_gives_the_fused_values():
    """With dropout off the straightforward path (used while dropout is active) equals the fused one."""
    torch.manual_seed(0)
    att = CorrelationAttention(16, 4)
    query, key_value = make_inputs(2, 2)
    offsets = grid_offsets(GRID)
    h = att.n_heads
    q = att.query_projection(query).view(2, -1, h, 4).transpose(1, 2)
    k = att.key_projection(key_value).view(2, -1, h, 4).transpose(1, 2)
    v = att.value_projection(key_value).view(2, -1, h, 4).transpose(1, 2)
    out_m, stats_m = att._materialised(q, k, v, att.sigma(query), offsets)
    out_f, stats_f = att(query, key_value, offsets)
    torch.testing.assert_close(out_m.transpose(1, 2).reshape(2, -1, 16), out_f, rtol=1e-5, atol=1e-6)
    for name in ("discrepancy", "target_discrepancy", "entropy"):
        torch.testing.assert_close(getattr(stats_m, name), getattr(stats_f, name), rtol=1e-5, atol=1e-6)


def test_dropout_makes_the_losses_see_the_dropped_correlation():
    torch.manual_seed(0)
    att = CorrelationAttention(16, 4, dropout=0.5).train()
    query, key_value = make_inputs(2, 2)
    _, dropped = att(query, key_value, grid_offsets(GRID))
    _, clean = att.eval()(query, key_value, grid_offsets(GRID))
    # dropout rescales kept entries by 2: rows no longer sum to 1, so the entropy changes
    assert not torch.allclose(dropped.entropy, clean.entropy)


def test_batch_losses_are_the_mean_of_single_image_losses():
    torch.manual_seed(0)
    stage = FODStage(6, 16, 4, 2, 2, 0.0, True, True, False).double()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, GRID[0] * GRID[1], 6, generator=g, dtype=torch.float64)
    reference = torch.randn(1, GRID[0] * GRID[1], 6, generator=g, dtype=torch.float64)

    def losses(x):
        out = stage(x, GRID, reference)
        parts = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
        return torch.stack([v for _, v in parts.items()] + list(phase_objectives(parts, 0.5, 0.5)))

    batched = losses(tokens)
    singles = torch.stack([losses(tokens[i : i + 1]) for i in range(4)]).mean(dim=0)
    torch.testing.assert_close(batched, singles, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_compiled_kernels_equal_the_straightforward_formulas_on_cpu():
    torch.manual_seed(0)
    att = CorrelationAttention(16, 4, block_elements=7 * 4 * GRID[0] * GRID[1], compiled=True)
    assert_matches_float64_reference(att, 3, 1)


def correlation_inputs(batch, ref_batch, dtype=torch.float32):
    """q (pre-scaled), k, v, inv_y, inv_x of a fused call on GRID with 4 heads of width 8."""
    g = torch.Generator().manual_seed(3)
    heads, e, length = 4, 8, GRID[0] * GRID[1]
    return [torch.randn(batch, heads, length, e, generator=g, dtype=dtype) * 0.4,
            torch.randn(ref_batch, heads, length, e, generator=g, dtype=dtype),
            torch.randn(ref_batch, heads, length, e, generator=g, dtype=dtype),
            torch.rand(batch, heads, length, generator=g, dtype=dtype) + 0.05,
            torch.rand(batch, heads, length, generator=g, dtype=dtype) + 0.05]  # fmt: skip


def fused_values_and_gradients(batch, ref_batch, keep_bytes, block_elements, dtype=torch.float32):
    """fused_correlation's four outputs and the gradients of a weighted sum of them for its five inputs."""
    inputs = [x.requires_grad_() for x in correlation_inputs(batch, ref_batch, dtype)]
    out, stats = fused_correlation(*inputs, grid_offsets(GRID), block_elements, keep_bytes=keep_bytes)
    outputs = [out, stats.discrepancy, stats.target_discrepancy, stats.entropy]
    g = torch.Generator().manual_seed(4)
    weights = [torch.randn(o.shape, generator=g, dtype=dtype) for o in outputs]
    return outputs + list(torch.autograd.grad(weighted_sum(outputs, weights), inputs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("batch", "ref_batch"), [(1, 1), (3, 3), (3, 1)])
def test_kept_logarithms_give_the_same_values_and_gradients_bit_for_bit(dtype, batch, ref_batch, monkeypatch):
    """keep_logs_mib: the backward pass reusing the forward's logarithms (all of them, or the two blocks a small
    budget holds) gives exactly what recomputing them gives."""
    from fod_lightning.models.fod import correlation

    kept_blocks, forward_block = [], correlation.forward_block
    monkeypatch.setattr(correlation, "forward_block",
                        lambda *a, keep=False: kept_blocks.append(keep) or forward_block(*a, keep=keep))  # fmt: skip
    length, block_elements = GRID[0] * GRID[1], 7 * 4 * GRID[0] * GRID[1]  # ragged blocks
    images = 1 if ref_batch == 1 and batch > 1 else batch  # a broadcast reference: one image per block on a CPU
    rows = block_rows_for(torch.empty(batch, 4, length), length, block_elements, images)
    assert 1 < rows < length
    block_bytes = 2 * images * 4 * rows * length * (4 if dtype == torch.float32 else 8)
    recomputed = fused_values_and_gradients(batch, ref_batch, 0, block_elements, dtype)
    blocks = -(-length // rows) * (batch // images)
    assert kept_blocks == [False] * blocks
    for keep, kept_count in ((2 * block_bytes, 2), (10**9, blocks)):
        kept_blocks.clear()
        kept = fused_values_and_gradients(batch, ref_batch, keep, block_elements, dtype)
        assert sum(kept_blocks) == kept_count
        for a, b in zip(kept, recomputed):
            assert torch.equal(a, b)


def test_a_broadcast_reference_scores_each_image_of_a_batch_as_alone_on_a_cpu():
    """One reference for the batch (FOD's inter branch while scoring): one image per block on a CPU, so that an
    image's values do not depend on the batch it is scored in, bit for bit (and no expanded copies per block)."""
    q, k, v, inv_y, inv_x = correlation_inputs(3, 1)
    with torch.no_grad():
        out, stats = fused_correlation(q, k, v, inv_y, inv_x, grid_offsets(GRID))
        for i in range(3):
            one = slice(i, i + 1)
            out_i, stats_i = fused_correlation(q[one], k, v, inv_y[one], inv_x[one], grid_offsets(GRID))
            assert torch.equal(out_i, out[one])
            for name in ("discrepancy", "target_discrepancy", "entropy"):
                assert torch.equal(getattr(stats_i, name), getattr(stats, name)[one]), name


def test_compiled_kernels_on_a_cpu_equal_the_eager_ones_with_the_logarithms_kept():
    """model.net.compile_correlation=true on a CPU (an inductor C++ build): the compiled blocks, keeping the
    logarithms for the backward pass (or not), give the eager values and gradients to float32 rounding."""
    results = {}
    for compiled, keep in ((False, 0), (True, 10**9), (True, 0)):
        inputs = [x.requires_grad_() for x in correlation_inputs(2, 1)]
        out, stats = fused_correlation(*inputs, grid_offsets(GRID), None, compiled, keep_bytes=keep)
        outputs = [out, stats.discrepancy, stats.target_discrepancy, stats.entropy]
        g = torch.Generator().manual_seed(4)
        loss = weighted_sum(outputs, [torch.randn(o.shape, generator=g) for o in outputs])
        results[compiled, keep] = outputs + list(torch.autograd.grad(loss, inputs))
    for variant in ((True, 10**9), (True, 0)):
        for a, b in zip(results[False, 0], results[variant]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
