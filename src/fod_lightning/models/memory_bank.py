"""Memory banks of patch features: greedy k-center coreset selection on a sparse random projection, and exact
nearest-neighbour search in chunks (never a full queries x bank distance matrix)."""

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from fod_lightning.utils.progress import Progress as ProgressLog

DISTANCE_ELEMENTS = 2**24  # largest (queries x bank) block of distances computed at once: 64 MiB in float32
ROW_ELEMENTS = 2**24  # largest (rows x features) block of a distance update
CORESET_METHODS = ("fast", "exact")
LEAF_ROWS = 128  # rows per leaf of the fast greedy's k-d tree (at most)
TREE_COMPONENTS = 16  # principal components the k-d tree splits
PROGRESS_SECONDS = 2.0

Progress = Callable[[int, int], object]


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


def k_center_greedy(features: torch.Tensor, k: int, start: int, max_elements: int = ROW_ELEMENTS,
                    method: str = "fast", progress: Progress | None = None) -> torch.Tensor:  # fmt: skip
    """Greedy k-center coreset: from row ``start``, repeatedly the row farthest from every row chosen so far (the
    first such row on ties, as ``torch.argmax``).

    Args:
        features: (n, d) rows (projected patch features), on any device (a GPU selects much faster).
        k: rows to choose.
        start: the first row.
        max_elements: the largest (rows x features) block of the ``exact`` method's distance update.
        method: ``exact`` updates every row's distance to its nearest chosen row at every selection (anomalib's
            ``KCenterGreedy``); ``fast`` (:func:`k_center_greedy_fast`) chooses the same rows, computing only the
            distances that can change. ``fast`` needs float32 / float64 CPU rows, finite; elsewhere it is ``exact``.
        progress: called as ``progress(done, k)`` every ``PROGRESS_SECONDS`` at most, and once at the end.
    Returns:
        (k,) indices of the chosen rows, in the order chosen.
    """
    if method not in CORESET_METHODS:
        raise ValueError(f"k-center greedy method {method!r} is unknown: use one of {CORESET_METHODS}")
    if method == "fast" and fast_applies(features, k):
        return k_center_greedy_fast(features, k, start, progress=progress)
    n = features.shape[0]
    block = max(1, max_elements // max(1, features.shape[1]))
    min_distances = torch.full((n,), math.inf, device=features.device, dtype=features.dtype)
    chosen = torch.empty(k, dtype=torch.long, device=features.device)
    idx = torch.tensor(start, device=features.device)
    chosen[0] = idx
    report = _Reporter(progress, k)
    for j in range(1, k):
        center = features[idx]
        for b in range(0, n, block):  # distances to the newest center, a block of rows at a time
            d = torch.linalg.norm(features[b : b + block] - center, ord=2, dim=1)
            torch.minimum(min_distances[b : b + block], d, out=min_distances[b : b + block])
        idx = torch.argmax(min_distances)
        min_distances[idx] = 0.0
        chosen[j] = idx
        report(j + 1)
    report.end()
    return chosen


def fast_applies(features: torch.Tensor, k: int) -> bool:
    """Whether :func:`k_center_greedy_fast` can choose ``k`` of ``features``: float32 / float64 rows on the CPU
    whose squared distances cannot overflow (finite, NaN-free)."""
    if features.device.type != "cpu" or features.dtype not in (torch.float32, torch.float64):
        return False
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0 or k < 2:
        return False
    return bool(torch.isfinite(8 * features.square().sum(1).max()))


def k_center_greedy_fast(features: torch.Tensor, k: int, start: int, progress: Progress | None = None,
                         leaf_rows: int = LEAF_ROWS) -> torch.Tensor:  # fmt: skip
    """:func:`k_center_greedy`'s choice (the same rows in the same order, ties included), fast on a CPU.

    The greedy needs the largest distance of any row to its nearest chosen row (the ``exact`` method keeps each
    row's such distance, ``min_distances``, up to date at every selection). Here the rows are in leaves of a k-d
    tree (about ``leaf_rows`` each; the tree only affects the speed). A leaf keeps the largest ``min_distances``
    of its rows, which only falls as rows are chosen: an upper bound for a leaf not updated since (lazy). Each
    selection brings up to date the leaves whose bound is the largest, until the largest bound (and every leaf
    that ties with it) is exact, and chooses its first row (lowest index) at that distance.

    Bringing a leaf up to date takes the chosen rows since its last update in one matrix product (squared
    distances |x|^2 - 2 x.c + |c|^2); only the pairs it cannot prove at least the row's current distance (with the
    rounding errors bounded, below) are computed as the ``exact`` method does, ``torch.linalg.norm(x - c)``, whose
    value per row does not depend on how many rows are computed together. So each ``min_distances`` that matters
    is bit for bit the ``exact`` method's, and so is every choice.

    Rounding (u: the dtype's unit roundoff, eps = 2u): the norm of a d-vector difference is within
    (d + 4) eps of the true distance D, relatively, plus 4 sqrt(d * smallest normal) for underflow; the product
    form of D^2 is within 4 (d + 8) eps (|x|^2 + |c|^2) (dot products in any summation order: (d + 3) u
    relatively, of terms at most |x|^2 + |c|^2). A pair is skipped only when its product form, less that error,
    is at least ((m + underflow) / (1 - 2 (d + 4) eps))^2, m the row's current distance: then the exact method's
    norm is at least m and leaves m as it is. Needs finite rows whose squared norms do not overflow
    (:func:`fast_applies`) and full float32 products (``torch.set_float32_matmul_precision("highest")`` while it
    runs: no bfloat16 / TF32). Memory: a copy of ``features`` in leaf order.
    """
    with _highest_matmul_precision():
        return _k_center_greedy_fast(features, k, start, progress, leaf_rows)


def _k_center_greedy_fast(features: torch.Tensor, k: int, start: int, progress: Progress | None,
                          leaf_rows: int) -> torch.Tensor:  # fmt: skip
    n, d = features.shape
    finfo = torch.finfo(features.dtype)
    norm_tol = (d + 4) * finfo.eps
    underflow = 4 * math.sqrt(d * finfo.tiny)
    product_tol = 4 * (d + 8) * finfo.eps
    order, offsets = _leaves(features, leaf_rows)
    rows = features[order]  # leaf by leaf, contiguous
    sq_norms = rows.square().sum(1)
    position = torch.empty_like(order)
    position[order] = torch.arange(n)
    n_leaves = len(offsets) - 1
    leaf_of = torch.repeat_interleave(torch.arange(n_leaves), torch.tensor(offsets).diff())
    centers = features.new_empty(k, d)
    center_sq = features.new_empty(k)
    min_distances = torch.full((n,), math.inf, dtype=features.dtype)  # in leaf order; a lazy leaf's are stale
    leaf_max = torch.full((n_leaves,), math.inf, dtype=features.dtype)  # exact for a leaf up to date, else a bound
    applied = [0] * n_leaves  # chosen rows applied to each leaf

    def update(leaf: int, j: int) -> None:  # applies the chosen rows applied[leaf]..j-1 to the leaf
        a, b = offsets[leaf], offsets[leaf + 1]
        x, current = rows[a:b], min_distances[a:b]
        c, c_sq = centers[applied[leaf] : j], center_sq[applied[leaf] : j]
        norms = sq_norms[a:b, None] + c_sq
        bound = torch.addmm(norms, x, c.T, alpha=-2).sub_(norms.mul_(product_tol))  # <= true D^2
        needed = ((current + underflow) / (1 - 2 * norm_tol)).square_()
        r, i = (bound < needed[:, None]).nonzero(as_tuple=True)
        if r.numel():
            distances = torch.linalg.norm(x[r] - c[i], ord=2, dim=1)
            current.scatter_reduce_(0, r, distances, "amin")
        leaf_max[leaf] = current.max()
        applied[leaf] = j

    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = start
    centers[0] = features[start]
    center_sq[0] = sq_norms[position[start]]
    report = _Reporter(progress, k)
    for j in range(1, k):
        while True:  # the largest leaf bounds, and their ties, up to date
            largest = leaf_max.max()
            tied = (leaf_max == largest).nonzero().squeeze(1).tolist()
            stale = [leaf for leaf in tied if applied[leaf] < j]
            if not stale:
                break
            for leaf in stale:
                update(leaf, j)
        idx = min(_first_at(min_distances, order, offsets[leaf], offsets[leaf + 1], largest) for leaf in tied)
        at = int(position[idx])
        min_distances[at] = 0.0
        leaf = int(leaf_of[at])
        leaf_max[leaf] = min_distances[offsets[leaf] : offsets[leaf + 1]].max()
        chosen[j] = idx
        centers[j] = features[idx]
        center_sq[j] = sq_norms[at]
        report(j + 1)
    report.end()
    return chosen


@contextmanager
def _highest_matmul_precision() -> Iterator[None]:
    """Full-precision float32 matrix products (the fast greedy's error bound), the setting restored after."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _first_at(values: torch.Tensor, order: torch.Tensor, a: int, b: int, value: torch.Tensor) -> int:
    """The lowest original index of a row in a:b (leaf order) whose value is ``value``."""
    return int(order[a:b][values[a:b] == value].min())


def _leaves(features: torch.Tensor, leaf_rows: int) -> tuple[torch.Tensor, list[int]]:
    """Rows (n,) in the leaf order of a k-d tree on their top ``TREE_COMPONENTS`` principal components (median
    splits along the component of the largest variance) and the leaves' offsets (n_leaves + 1)."""
    n, d = features.shape
    sample = features[:: max(1, n // 16384)].double()  # the components of a subsample: only the speed depends on it
    mean = sample.mean(0)
    _, vectors = torch.linalg.eigh((sample - mean).T @ (sample - mean))
    basis = vectors[:, -TREE_COMPONENTS:].to(features.dtype)
    z = features @ basis - mean.to(features.dtype) @ basis
    leaves, todo = [], [torch.arange(n)]
    while todo:
        members = todo.pop()
        if members.numel() <= leaf_rows:
            leaves.append(members)
            continue
        coordinates = z[members]
        split = coordinates[:, int(coordinates.var(0).argmax())]
        ranked = members[torch.argsort(split, stable=True)]
        todo += [ranked[: members.numel() // 2], ranked[members.numel() // 2 :]]
    offsets = [0]
    for members in leaves:
        offsets.append(offsets[-1] + members.numel())
    return torch.cat(leaves), offsets


class _Reporter:
    """Calls ``progress(done, total)`` at most every ``PROGRESS_SECONDS``, and at the end."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.last = progress, total, time.monotonic()

    def __call__(self, done: int) -> None:
        if self.progress is not None and time.monotonic() - self.last >= PROGRESS_SECONDS:
            self.progress(done, self.total)
            self.last = time.monotonic()

    def end(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total)


def coreset_size(n: int, ratio: float, key: str = "model.net.coreset_ratio") -> int:
    """How many of ``n`` patches a coreset ``ratio`` keeps (the ``k`` of :func:`coreset`); a ratio that keeps none is
    refused, naming ``key``."""
    k = int(n * ratio)
    if k < 1:
        raise ValueError(f"a coreset ratio of {ratio} keeps no patch of {n}: raise {key}")
    return k


def logged_coreset(what: str, embeddings: torch.Tensor, k: int, eps: float, generator: torch.Generator,
                   method: str = "fast") -> torch.Tensor:  # fmt: skip
    """:func:`coreset`, its progress logged with an estimate (``what``: the phase, named in the lines)."""
    progress = ProgressLog(what, k)
    keep = coreset(embeddings, k, eps, generator, method, progress=progress.step_to)
    progress.finish()
    return keep


def coreset(embeddings: torch.Tensor, k: int, eps: float, generator: torch.Generator, method: str = "fast",
            progress: Progress | None = None) -> torch.Tensor:  # fmt: skip
    """Indices of the ``k``-patch coreset of ``embeddings`` (n, d): greedy k-center on a sparse random projection to
    the Johnson-Lindenstrauss dimension of ``eps`` (on the embeddings themselves when that is not fewer than d).
    ``method`` and ``progress``: those of :func:`k_center_greedy` (both methods choose the same rows)."""
    n, d = embeddings.shape
    components = johnson_lindenstrauss_dim(n, eps)
    features = embeddings
    if components < d:
        projection = sparse_random_projection(d, components, generator).to(embeddings.device, embeddings.dtype)
        features = embeddings @ projection
    start = int(torch.randint(n, (1,), generator=generator))
    return k_center_greedy(features, k, start, method=method, progress=progress)
