"""Memory banks of patch features: greedy k-center coreset selection on a sparse random projection, and exact
nearest-neighbour search in chunks (never a full queries x bank distance matrix)."""

import math

import torch

DISTANCE_ELEMENTS = 2**24  # largest (queries x bank) block of distances computed at once: 64 MiB in float32
ROW_ELEMENTS = 2**24  # largest (rows x features) block of a distance update


def euclidean_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise distances (n, m) of rows x (n, d) and y (m, d): sqrt(|x|^2 - 2 x.y + |y|^2), clamped at 0."""
    x_norm = x.pow(2).sum(dim=-1, keepdim=True)
    y_norm = y.pow(2).sum(dim=-1, keepdim=True)
    distances = torch.matmul(x, y.transpose(-2, -1))
    distances.mul_(-2).add_(x_norm).add_(y_norm.transpose(-2, -1))
    return distances.clamp_min_(0).sqrt_()


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, chunk_queries: bool = True,
                       max_elements: int = DISTANCE_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The ``k`` nearest rows of ``bank`` (m, d) to each row of ``queries`` (n, d): distances and indices (n, k),
    nearest first. Exact. Blocks of the bank, and of the queries unless ``chunk_queries`` is off (an export traces
    one block: the number of queries follows the batch), keep about ``max_elements`` distances in memory."""
    k = min(k, bank.shape[0])
    bank_block = max(k, min(bank.shape[0], max_elements))
    query_block = max(1, max_elements // bank_block) if chunk_queries else None
    blocks = [queries] if query_block is None else queries.split(query_block)
    found_d, found_i = [], []
    for rows in blocks:
        best_d = best_i = None
        for b in range(0, bank.shape[0], bank_block):
            d = euclidean_distances(rows, bank[b : b + bank_block])
            d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            i = i + b
            if best_d is not None:  # merged with the blocks before: the k smallest of both
                d, order = torch.cat([best_d, d], 1).topk(k, dim=1, largest=False)
                i = torch.cat([best_i, i], 1).gather(1, order)
            best_d, best_i = d, i
        found_d.append(best_d)
        found_i.append(best_i)
    return torch.cat(found_d), torch.cat(found_i)


def johnson_lindenstrauss_dim(n_samples: int, eps: float) -> int:
    """Dimensions a random projection needs to keep distances of ``n_samples`` points within ``eps``."""
    return int(4 * math.log(n_samples) / (eps**2 / 2 - eps**3 / 3))


def sparse_random_projection(n_features: int, n_components: int, generator: torch.Generator) -> torch.Tensor:
    """A very sparse random projection matrix (n_features, n_components) (Li, Hastie and Church, KDD 2006): entries
    +-sqrt(1 / (density * n_components)) with probability density / 2 each, density = 1 / sqrt(n_features)."""
    density = 1 / math.sqrt(n_features)
    draws = torch.rand(n_features, n_components, generator=generator)
    signs = torch.where(torch.rand(n_features, n_components, generator=generator) < 0.5, -1.0, 1.0)
    return torch.where(draws < density, signs, 0.0) * math.sqrt(1 / density) / math.sqrt(n_components)


def k_center_greedy(features: torch.Tensor, k: int, start: int, max_elements: int = ROW_ELEMENTS) -> torch.Tensor:
    """Greedy k-center coreset: from row ``start``, repeatedly the row farthest from every row chosen so far.

    Args:
        features: (n, d) rows (projected patch features), on any device (a GPU selects much faster).
        k: rows to choose.
        start: the first row.
    Returns:
        (k,) indices of the chosen rows, in the order chosen.
    """
    n = features.shape[0]
    block = max(1, max_elements // max(1, features.shape[1]))
    min_distances = torch.full((n,), math.inf, device=features.device, dtype=features.dtype)
    chosen = torch.empty(k, dtype=torch.long, device=features.device)
    idx = torch.tensor(start, device=features.device)
    chosen[0] = idx
    for j in range(1, k):
        center = features[idx]
        for b in range(0, n, block):  # distances to the newest center, a block of rows at a time
            d = torch.linalg.norm(features[b : b + block] - center, ord=2, dim=1)
            torch.minimum(min_distances[b : b + block], d, out=min_distances[b : b + block])
        idx = torch.argmax(min_distances)
        min_distances[idx] = 0.0
        chosen[j] = idx
    return chosen


def coreset(embeddings: torch.Tensor, ratio: float, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of the ``ratio`` coreset of ``embeddings`` (n, d): greedy k-center on a sparse random projection to
    the Johnson-Lindenstrauss dimension of ``eps`` (on the embeddings themselves when that is not fewer than d)."""
    n, d = embeddings.shape
    k = int(n * ratio)
    if k < 1:
        raise ValueError(f"a coreset ratio of {ratio} keeps no patch of {n}: raise model.net.coreset_ratio")
    components = johnson_lindenstrauss_dim(n, eps)
    features = embeddings
    if components < d:
        projection = sparse_random_projection(d, components, generator).to(embeddings.device, embeddings.dtype)
        features = embeddings @ projection
    start = int(torch.randint(n, (1,), generator=generator))
    return k_center_greedy(features, k, start)
