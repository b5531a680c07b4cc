"""KL, entropy and Gaussian targets against straightforward float64 references."""

import math

import numpy as np
import pytest
import torch

from fod_lightning.models.fod.attention import gaussian_target, sigma_from_logits, squared_grid_distances
from fod_lightning.models.fod.divergence import entropy, kl_divergence, symmetric_discrepancy

EPS = 1e-4


def random_rows(rng, shape):
    x = rng.random(shape) ** 3  # uneven rows, some near zero
    return x / x.sum(axis=-1, keepdims=True)


def kl_reference(p, q):
    b, h, n, s = p.shape
    out = np.zeros((b, n))
    for bi in range(b):
        for i in range(n):
            total = 0.0
            for hi in range(h):
                total += sum(
                    p[bi, hi, i, j] * (math.log(p[bi, hi, i, j] + EPS) - math.log(q[bi, hi, i, j] + EPS))
                    for j in range(s)
                )
            out[bi, i] = total / h
    return out


def entropy_reference(p):
    b, h, n, s = p.shape
    out = np.zeros((b, n))
    for bi in range(b):
        for i in range(n):
            out[bi, i] = (
                sum(-p[bi, hi, i, j] * math.log(p[bi, hi, i, j] + EPS) for hi in range(h) for j in range(s)) / h
            )
    return out


def test_kl_and_entropy_match_float64_reference():
    rng = np.random.default_rng(0)
    p, q = random_rows(rng, (2, 3, 5, 5)), random_rows(rng, (2, 3, 5, 5))
    tp, tq = torch.from_numpy(p), torch.from_numpy(q)
    np.testing.assert_allclose(kl_divergence(tp, tq).numpy(), kl_reference(p, q), rtol=1e-12)
    np.testing.assert_allclose(entropy(tp).numpy(), entropy_reference(p), rtol=1e-12)
    expected_sd = kl_reference(p, q).mean() + kl_reference(q, p).mean()
    assert symmetric_discrepancy(tp, tq).item() == pytest.approx(expected_sd, rel=1e-12)


def test_kl_is_zero_for_identical_rows_and_eps_matters():
    rng = np.random.default_rng(1)
    p = torch.from_numpy(random_rows(rng, (1, 2, 4, 4)))
    assert torch.allclose(kl_divergence(p, p), torch.zeros(1, 4, dtype=torch.float64))
    one_hot = torch.zeros(1, 1, 1, 4, dtype=torch.float64)
    one_hot[..., 0] = 1
    uniform = torch.full_like(one_hot, 0.25)
    # KL(onehot || uniform) = log((1 + eps) / (0.25 + eps)) with the eps inside the logs
    assert kl_divergence(one_hot, uniform).item() == pytest.approx(math.log((1 + EPS) / (0.25 + EPS)), rel=1e-12)


def test_squared_grid_distances_row_major():
    dy2, dx2 = squared_grid_distances((3, 4))
    assert dy2.shape == (12, 12)
    for i in range(12):
        for j in range(12):
            assert dy2[i, j] == (i // 4 - j // 4) ** 2
            assert dx2[i, j] == (i % 4 - j % 4) ** 2


def test_gaussian_target_matches_double_loop_over_grid_positions():
    h, w = 3, 4
    rng = np.random.default_rng(2)
    logits = torch.from_numpy(rng.normal(size=(2, 2, h * w, 2)))
    sigma = sigma_from_logits(logits)  # (B, H, L, 2)
    target = gaussian_target(sigma, *(d.double() for d in squared_grid_distances((h, w))))
    s = sigma.numpy()
    for b in range(2):
        for head in range(2):
            for i in range(h * w):
                sy, sx = s[b, head, i]
                raw = np.zeros(h * w)
                for j in range(h * w):
                    dy, dx = i // w - j // w, i % w - j % w
                    raw[j] = 1 / (2 * math.pi * sy * sx) * math.exp(-(dy**2) / (2 * sy**2) - dx**2 / (2 * sx**2))
                np.testing.assert_allclose(target[b, head, i].numpy(), raw / raw.sum(), rtol=1e-10, atol=1e-300)


def test_sigma_parametrisation_range():
    logits = torch.tensor([-100.0, 0.0, 100.0], dtype=torch.float64)
    sigma = sigma_from_logits(logits)
    assert sigma[0].item() == pytest.approx(3**1e-5 - 1, rel=1e-6)
    assert sigma[1].item() == pytest.approx(3 ** (0.5 + 1e-5) - 1, rel=1e-9)
    assert sigma[2].item() == pytest.approx(3 ** (1 + 1e-5) - 1, rel=1e-9)
