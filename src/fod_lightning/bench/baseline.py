"""A straightforward implementation of the authors' structure, kept as the benchmark's baseline.

It runs on the same modules (and so the same weights) as :class:`fod_lightning.models.fod.model.FOD` but computes
as the authors' code does: full (B, H, L, S) correlation, target and divergence tensors with sigma and
the distance maps repeated per head, the Gaussian with its 1 / (2 pi sigma_y sigma_x) factor normalised
afterwards, the backbone run on every step, and per stage two backward passes (target phase with the
graph retained, then correlation phase) before the optimizer step. Not used for training.
"""

import math

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

from fod_lightning.models.fod.attention import CorrelationAttention, squared_grid_distances
from fod_lightning.models.fod.divergence import entropy, kl_divergence
from fod_lightning.models.fod.model import FOD, FODStage


def attention(att: CorrelationAttention, x: torch.Tensor, kv: torch.Tensor, dist: tuple[torch.Tensor, torch.Tensor]):
    """The authors' ``Attention2D.forward``: returns out (B, L, D), series C and unnormalised target."""
    b, length, _ = x.shape
    s, h = kv.shape[1], att.n_heads
    queries = att.query_projection(x).view(b, length, h, -1)
    keys = att.key_projection(kv).view(b, s, h, -1)
    values = att.value_projection(kv).view(b, s, h, -1)
    sigma = att.sigma_projection(x).view(b, length, h, 2)
    scores = torch.einsum("blhe,bshe->bhls", queries, keys)
    sigma = torch.pow(3, torch.sigmoid(sigma.transpose(1, 2) * 5) + 1e-5) - 1  # (B, H, L, 2)
    sigma_y = sigma[..., 0:1].repeat(1, 1, 1, s)
    sigma_x = sigma[..., 1:2].repeat(1, 1, 1, s)
    dist_y = dist[0][None, None].repeat(b, h, 1, 1)
    dist_x = dist[1][None, None].repeat(b, h, 1, 1)
    target = 1.0 / (2 * math.pi * sigma_y * sigma_x) * torch.exp(-dist_y / (2 * sigma_y**2) - dist_x / (2 * sigma_x**2))
    series = torch.softmax(att.scale * scores, dim=-1)
    out = torch.einsum("bhls,bshd->blhd", series, values).reshape(b, length, -1)
    return out, series, target


def stage_forward(stage: FODStage, tokens: torch.Tensor, grid: tuple[int, int], reference: torch.Tensor):
    """tokens (B, L, C), reference (1, L, C) repeated to the batch -> reconstruction and per-layer
    (series, normalised target) of both branches."""
    dist = squared_grid_distances(grid, tokens.device)
    x = stage.embedding(tokens, grid)
    ref = stage.ref_embedding(reference, grid).repeat(tokens.shape[0], 1, 1)
    intra, inter = [], []
    for layer in stage.encoder.encode_layers:
        intra_out, c_intra, t_intra = attention(layer.self_attention, x, x, dist)
        inter_out, c_inter, t_inter = attention(layer.cross_attention, x, ref, dist)
        intra.append((c_intra, t_intra / t_intra.sum(dim=-1, keepdim=True)))
        inter.append((c_inter, t_inter / t_inter.sum(dim=-1, keepdim=True)))
        z = layer.norm1((x + intra_out) - (x + inter_out))
        x = layer.norm2(z + layer.ffn(z))
    return stage.projection(stage.encoder.norm(x)), intra, inter


def _sd(p, q):
    return kl_divergence(p, q).mean() + kl_divergence(q, p).mean()


def stage_objectives(reconstruction, tokens, intra, inter, lambda1=0.5, lambda2=0.5):
    """The authors' loss1 (target phase) and loss2 (correlation phase) of one stage."""
    rec = F.mse_loss(reconstruction, tokens) + (1 - F.cosine_similarity(reconstruction, tokens, dim=-1)).mean()
    k = len(intra)
    intra_corr = sum(_sd(t.detach(), c) for c, t in intra) / k
    intra_tgt = sum(_sd(t, c.detach()) for c, t in intra) / k
    intra_ent = sum(entropy(c).mean() for c, _ in intra) / k
    inter_corr = sum(_sd(t.detach(), c) for c, t in inter) / k
    inter_tgt = sum(_sd(t, c.detach()) for c, t in inter) / k
    inter_ent = sum(entropy(c).mean() for c, _ in inter) / k
    loss1 = rec + lambda1 * intra_tgt - lambda1 * inter_tgt
    loss2 = rec - lambda1 * intra_corr - lambda2 * intra_ent + lambda1 * inter_corr + lambda2 * inter_ent
    return loss1, loss2


def train_step(net: FOD, optimizer: torch.optim.Optimizer, images: torch.Tensor) -> list[float]:
    """One authors' iteration: backbone, then per stage zero_grad, backward(loss1, retain), backward(loss2), step."""
    losses = []
    for i, (stage, maps) in enumerate(zip(net.stages, net.pooled_features(images))):
        grid = (maps.shape[2], maps.shape[3])
        tokens = maps.flatten(2).transpose(1, 2)
        reconstruction, intra, inter = stage_forward(stage, tokens, grid, net.reference.tokens(i))
        loss1, loss2 = stage_objectives(reconstruction, tokens, intra, inter)
        optimizer.zero_grad()
        loss1.backward(retain_graph=True)
        loss2.backward()
        optimizer.step()
        losses.append(float(loss1 + loss2))
    return losses


@torch.no_grad()
def score(net: FOD, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The authors' test procedure for a batch (they use batch 1): maps (B, H, W) and image scores (B,).
    Their ``max`` runs over the whole tensor, i.e. the image at batch 1; here it is taken per image."""
    size = images.shape[-2:]
    maps = []
    for i, (stage, feature) in enumerate(zip(net.stages, net.pooled_features(images))):
        grid = (feature.shape[2], feature.shape[3])
        tokens = feature.flatten(2).transpose(1, 2)
        reconstruction, _, inter = stage_forward(stage, tokens, grid, net.reference.tokens(i))
        s_rec = ((tokens - reconstruction) ** 2).mean(-1) + 1 - F.cosine_similarity(tokens, reconstruction, dim=-1)
        d = sum(kl_divergence(c, t) + kl_divergence(t, c) for c, t in inter) / len(inter)
        p = torch.softmax(-d, dim=-1)
        patch = (s_rec * (p.max(dim=-1, keepdim=True).values - p)).view(-1, 1, *grid)
        maps.append(F.interpolate(patch, size=size, mode="bilinear", align_corners=True)[:, 0])
    amap = torch.stack(maps).mean(0).cpu().numpy()
    scores = np.array([scipy.ndimage.gaussian_filter(m, sigma=4).max() for m in amap])
    return amap, scores
