"""Batch-independent k-means (k-means++ seeding, exact nearest-centroid re-ranking) used by the quantizers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: Number of nearest-centroid candidates, found with a fast float32 matrix product, that are re-ranked with
#: float64 distances when the float32 winner is within rounding reach of the runner-up. This makes an item's
#: code independent of which other items share its batch (float32 matrix products round differently for
#: different batch shapes), so encoding one item, a batch or the whole corpus gives the same codes.
_RERANK_CANDIDATES = 4

# ----------------------------------------------------------------------------------------------------------
# k-means building blocks (shared by the k-means quantizer and the RQ-VAE codebook initialisation)
# ----------------------------------------------------------------------------------------------------------


def row_chunks(n: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, chunk_size):
        yield start, min(start + chunk_size, n)


def sum_sq(x: torch.Tensor, chunk_size: int = 65536) -> float:
    """Sum of squares of all elements in float64, chunked over rows (no full-size float64 copy)."""
    return float(sum(x[s:e].double().square().sum() for s, e in row_chunks(x.shape[0], chunk_size)))


def _mean_feature_variance(x: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension variance of ``x`` (a scale for the tolerance only)."""
    return float(torch.var(x, dim=0, unbiased=False).mean())


def _assign_fast(
    x: torch.Tensor, centroids: torch.Tensor, chunk_size: int, xsq: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid (float32, for Lloyd iterations) and the squared distance to it, chunked over rows so
    that only a (chunk, K) block of distances exists at a time. ``xsq``: precomputed squared row norms."""
    if xsq is None:
        xsq = (x * x).sum(1)
    c_sq = (centroids * centroids).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    mind = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for s, e in row_chunks(x.shape[0], chunk_size):
        xc = x[s:e]
        d = torch.addmm(c_sq, xc, centroids.T, beta=1.0, alpha=-2.0)
        val, idx = d.min(dim=1)
        labels[s:e] = idx
        mind[s:e] = (val + xsq[s:e]).clamp_min_(0.0)
    return labels, mind


def nearest_exact(x: torch.Tensor, centroids: torch.Tensor, centroids64: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of each row of ``x`` (one chunk), independent of the other rows in the chunk.

    A float32 matrix product ranks the centroids. Where the two best are further apart than the float32
    rounding error can reach (a worst-case bound, times 8), that winner is certainly the true nearest
    centroid whatever the rounding; the remaining near-ties re-rank the ``_RERANK_CANDIDATES`` best with
    float64 distances computed element-wise (ties -> lowest centroid index).
    """
    k, dim = centroids.shape
    n = x.shape[0]
    if k <= _RERANK_CANDIDATES:
        cand = torch.arange(k, device=x.device).expand(n, k)
        dist = (x.double().unsqueeze(1) - centroids64[cand]).square_().sum(-1)
        return cand.gather(1, dist.argmin(dim=1, keepdim=True)).squeeze(1)
    c_sq = (centroids * centroids).sum(1)
    d = torch.addmm(c_sq, x, centroids.T, beta=1.0, alpha=-2.0)
    top = d.topk(_RERANK_CANDIDATES, dim=1, largest=False)  # ascending values
    best = top.indices[:, 0].clone()
    c_max = float(c_sq.max().sqrt())
    x_norm = (x * x).sum(1).sqrt()
    bound = 8.0 * dim * 2.0**-24 * (2.0 * x_norm * c_max + c_max * c_max + x_norm * x_norm)
    near = ((top.values[:, 1] - top.values[:, 0]) <= bound).nonzero().flatten()
    if near.numel():
        cand = top.indices[near].sort(dim=1).values
        dist = (x[near].double().unsqueeze(1) - centroids64[cand]).square_().sum(-1)
        best[near] = cand.gather(1, dist.argmin(dim=1, keepdim=True)).squeeze(1)
    return best


def _cluster_sums(
    x: torch.Tensor, labels: torch.Tensor, k: int, chunk_size: int, x64: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-cluster sums of ``x``, accumulated in float64 (so the mean of identical points is that point
    exactly) and deterministic on CPU and GPU. ``x64``: an optional float64 copy of ``x``."""
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    if x64 is not None and not x.is_cuda:  # one call: fewer thread synchronisations
        return sums.index_put_((labels,), x64, accumulate=True)
    for s, e in row_chunks(x.shape[0], chunk_size):
        xc = x64[s:e] if x64 is not None else x[s:e].double()
        if x.is_cuda:  # index_add_ uses atomics on CUDA (non-deterministic order); a one-hot GEMM does not
            sums += F.one_hot(labels[s:e], k).double().T @ xc
        else:  # index_put_(accumulate=True) runs serially on CPU: deterministic, and far faster than index_add_
            sums.index_put_((labels[s:e],), xc, accumulate=True)
    return sums


def _kmeans_plusplus(
    x: torch.Tensor, k: int, generator: torch.Generator, max_points: int | None = None
) -> tuple[torch.Tensor, int]:
    """k-means++ seeding (D^2 sampling, seeded). Returns (k, D) centroids and the number of distinct seeds.

    Seeds are drawn from a seeded random pool of at most ``max(max_points, 8 k)`` points (the whole data when
    smaller), as scikit-learn's MiniBatchKMeans does with ``init_size``: the k sequential passes over the
    pool are the costly part of seeding. When the pool has fewer than ``k`` distinct points, every distinct
    point becomes a seed and the remaining centroids duplicate them (they end up unused; utilization
    reports it).
    """
    n = x.shape[0]
    if max_points is not None and n > max(max_points, 8 * k):
        pool = x[torch.randperm(n, generator=generator)[: max(max_points, 8 * k)].sort().values.to(x.device)]
    else:
        pool = x
    m = pool.shape[0]
    psq = (pool * pool).sum(1)
    psq64 = psq.double()

    def sqdist_to(c: torch.Tensor) -> torch.Tensor:
        csq = (c * c).sum()
        d = (psq - 2.0 * (pool @ c) + csq).double()
        # float32 cancellation leaves ~1e-7 relative noise for a point equal to c: treat it as zero, so that
        # duplicates of a chosen seed are never picked again (a relative squared distance below 1e-5 is a
        # near-duplicate, useless as a separate seed anyway).
        return torch.where(d > 1e-5 * (psq64 + float(csq)), d, torch.zeros_like(d))

    first = int(torch.randint(m, (1,), generator=generator))
    chosen = [first]
    d2 = sqdist_to(pool[first])
    for _ in range(1, k):
        cums = torch.cumsum(d2, 0)
        total = float(cums[-1])
        if total <= 0.0:
            break
        u = torch.rand(1, generator=generator, dtype=torch.float64).to(x.device) * total
        idx = min(int(torch.searchsorted(cums, u, right=True)), m - 1)
        chosen.append(idx)
        d2 = torch.minimum(d2, sqdist_to(pool[idx]))
    n_distinct = len(chosen)
    if n_distinct < k:
        logger.warning(
            "k-means: only %d distinct points for %d clusters; %d centroids duplicate others and stay unused",
            n_distinct,
            k,
            k - n_distinct,
        )
        chosen += [chosen[i % n_distinct] for i in range(k - n_distinct)]
    return pool[torch.tensor(chosen, device=x.device)].clone(), n_distinct


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans`: centroids (K, D), labels (N,), inertia (sum of squared distances), Lloyd
    iterations run, whether the tolerance was reached, how many empty clusters were re-seeded, and how many
    distinct k-means++ seeds were found (< K when the data has fewer distinct points than K)."""

    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: float
    n_iter: int
    converged: bool
    n_reseeded: int
    n_distinct_seeds: int


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    max_iter: int = 25,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    seed: int = 2024,
    init: torch.Tensor | None = None,
    chunk_size: int = 16384,
    init_max_points: int | None = 16384,
    show_progress: bool = False,
    desc: str = "k-means",
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding on a float tensor (CPU or GPU), memory-bounded.

    Distances are computed ``chunk_size`` rows at a time, so 10^6 points x 256 centroids never build an
    (N, K, D) or even an (N, K) tensor. Stops when labels no longer change or when the squared centroid shift
    drops below ``tol`` x the mean per-dimension variance of ``x`` (scikit-learn's rule), or after
    ``max_iter`` iterations. Empty clusters are re-seeded with the points farthest from their centroids.
    ``init`` (K, D) replaces the k-means++ seeding (used by tests and warm starts); otherwise seeds come from
    a random pool of at most ``max(init_max_points, 8 K)`` points (``None``: all points).
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"kmeans needs a non-empty (N, D) tensor, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"kmeans needs k >= 1, got {k}")
    x = x.float()
    n = x.shape[0]
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    if init is not None:
        if tuple(init.shape) != (k, x.shape[1]):
            raise ValueError(f"init must have shape {(k, x.shape[1])}, got {tuple(init.shape)}")
        centroids = init.to(device=x.device, dtype=torch.float32).clone()
        n_distinct = k
    else:
        centroids, n_distinct = _kmeans_plusplus(x, k, generator, init_max_points)
    var_tol = tol * _mean_feature_variance(x)
    xsq = (x * x).sum(1)
    # a float64 copy saves a conversion per iteration; skipped above 2^25 elements (256 MiB)
    x64 = x.double() if x.numel() <= 2**25 else None
    labels: torch.Tensor | None = None
    n_reseeded = 0
    converged = False
    n_iter = 0
    mind = torch.zeros(n, device=x.device)
    bar = tqdm(range(max_iter), desc=desc, disable=None if show_progress else True, leave=False)
    for it in bar:
        n_iter = it + 1
        new_labels, mind = _assign_fast(x, centroids, chunk_size, xsq)
        counts = torch.bincount(new_labels, minlength=k)
        sums = _cluster_sums(x, new_labels, k, chunk_size, x64)
        reseeded = 0
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            far = torch.topk(mind, min(len(empty), n)).indices.tolist()
            for j, p in zip(empty, far, strict=False):
                old = int(new_labels[p])
                # mind == 0: the point sits on a centroid (fewer distinct points than k); moving it frees nothing
                if float(mind[p]) <= 0.0 or int(counts[old]) <= 1:
                    continue
                sums[old] -= x[p].double()
                counts[old] -= 1
                sums[j] = x[p].double()
                counts[j] = 1
                new_labels[p] = j
                reseeded += 1
            n_reseeded += reseeded
        nonempty = (counts > 0).unsqueeze(1)
        new_centroids = torch.where(
            nonempty, sums / counts.clamp_min(1).unsqueeze(1).double(), centroids.double()
        )
        shift = float((new_centroids - centroids.double()).square().sum())
        centroids = new_centroids.float()
        unchanged = labels is not None and reseeded == 0 and torch.equal(new_labels, labels)
        labels = new_labels
        if show_progress:
            bar.set_postfix(inertia=f"{float(mind.double().sum()):.4g}", shift=f"{shift:.3g}")
        if unchanged or shift <= var_tol:
            converged = True
            break
    bar.close()
    labels, mind = _assign_fast(x, centroids, chunk_size, xsq)
    return KMeansResult(
        centroids=centroids,
        labels=labels,
        inertia=float(mind.double().sum()),
        n_iter=n_iter,
        converged=converged,
        n_reseeded=n_reseeded,
        n_distinct_seeds=n_distinct,
    )
