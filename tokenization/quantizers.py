"""Quantizers: item embeddings -> semantic IDs (one small integer per level).

Three interchangeable quantizers share one interface (:class:`Quantizer`), so the rest of genrec (the
CodeTable, the tokenizer, the CLI) never cares which one produced the codes:

* :class:`ResidualKMeansQuantizer` — UNGER's "unified codes" (§3.3.5, Algorithm 1) and the package default:
  hierarchical k-means through residual quantization. Level ``l`` clusters the residuals left by levels
  ``< l`` into ``K_l`` centroids; an item's code at level ``l`` is its nearest centroid, which is then
  subtracted. UNGER's ablation (§4.6) finds it clearly better than RQ-VAE and random codes.
* :class:`RQVAEQuantizer` — TIGER's RQ-VAE: an MLP auto-encoder whose latent is residual-quantized by
  learned codebooks (straight-through estimator, commitment loss, dead-code restarts).
* :class:`RandomQuantizer` — random codes per item, the ablation's baseline.

All three work on CPU or GPU tensors (or numpy arrays), are seeded (same seed -> identical codes), and save
to a folder as ``quantizer_config.json`` + ``quantizer.safetensors``; a reloaded quantizer encodes
bit-identically. :func:`load_quantizer` reloads any of them.

Codes can collide (two items, one code). The quantizers report it (:meth:`Quantizer.diagnostics`) and the
k-means quantizer can remove cheap collisions (``resolve_collisions="reassign"``); whatever remains is made
unique by the CodeTable's extra collision level.

Usage::

    q = ResidualKMeansQuantizer(num_levels=3, codebook_size=256)
    codes = q.fit_encode(item_embeddings)          # (N, 3) int64, rows in the order of the embeddings
    print(q.diagnostics(item_embeddings))          # utilization / entropy / collisions / MSE per level
    q.save_pretrained(run_dir / "quantizer")
    new_codes = load_quantizer(run_dir / "quantizer").encode(new_item_embeddings)

This module imports only torch, numpy, safetensors, transformers (for its progress bar) and the standard
library, so that ``tokenization/`` can be shipped as remote code unchanged.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import math
import os
import struct
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.utils.logging import tqdm

logger = logging.getLogger(__name__)

CONFIG_NAME = "quantizer_config.json"
WEIGHTS_NAME = "quantizer.safetensors"
FORMAT_VERSION = 1

#: Number of nearest-centroid candidates, found with a fast float32 matrix product, that are re-ranked with
#: float64 distances when the float32 winner is within rounding reach of the runner-up. This makes an item's
#: code independent of which other items share its batch (float32 matrix products round differently for
#: different batch shapes), so encoding one item, a batch or the whole corpus gives the same codes.
_RERANK_CANDIDATES = 4

EmbeddingsLike = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------------------------------------
# diagnostics
# ----------------------------------------------------------------------------------------------------------


@dataclass
class QuantizerDiagnostics:
    """Per-level health numbers of a set of codes, to compare quantizers and catch degenerate codebooks.

    All lists have one entry per level ``l`` (0-based):

    * ``used_codes`` / ``utilization``: distinct codes seen at level ``l`` / that number divided by ``K_l``.
    * ``entropy_bits`` / ``normalized_entropy``: entropy (bits) of the code distribution at level ``l`` and
      that entropy divided by ``log2 K_l`` (1.0 = perfectly uniform; 0.0 when ``K_l == 1``).
    * ``collision_rate``: fraction of items whose code prefix up to and including level ``l`` is shared with
      at least one other item (the last entry is the full-code collision rate the CodeTable must resolve).
    * ``residual_mse``: mean squared error per element of what is left after level ``l``
      (``x - sum of the chosen centroids up to l``), in ``mse_space`` ("input" for k-means and random,
      "latent" for RQ-VAE, whose codebooks live in the auto-encoder's latent space).

    ``reconstruction_mse`` is the per-element MSE of :meth:`Quantizer.decode` against the (pre-processed)
    input, ``input_mean_square`` the per-element mean of ``x**2`` (the MSE of reconstructing everything as
    zero), for scale. ``unique_codes`` / ``max_items_per_code`` describe the full codes.
    """

    quantizer_type: str
    num_items: int
    codebook_sizes: list[int]
    used_codes: list[int]
    utilization: list[float]
    entropy_bits: list[float]
    normalized_entropy: list[float]
    collision_rate: list[float]
    residual_mse: list[float]
    reconstruction_mse: float
    input_mean_square: float
    unique_codes: int
    max_items_per_code: int
    mse_space: str = "input"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (for logs, model cards and benchmark reports)."""
        return asdict(self)

    def __str__(self) -> str:
        head = (
            f"{self.quantizer_type}: {self.num_items} items, {self.unique_codes} unique codes "
            f"(max {self.max_items_per_code} items per code), reconstruction MSE {self.reconstruction_mse:.6g}"
            f" (input mean square {self.input_mean_square:.6g}; residual MSE in {self.mse_space} space)"
        )
        cols = ["level", "K", "used", "util", "entropy", "norm.ent", "collision", "residual MSE"]
        rows = [
            [
                str(i + 1),
                str(self.codebook_sizes[i]),
                str(self.used_codes[i]),
                f"{self.utilization[i]:.3f}",
                f"{self.entropy_bits[i]:.3f}",
                f"{self.normalized_entropy[i]:.3f}",
                f"{self.collision_rate[i]:.4f}",
                f"{self.residual_mse[i]:.6g}",
            ]
            for i in range(len(self.codebook_sizes))
        ]
        widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
        lines = [head, "  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)


def code_statistics(codes: torch.Tensor, codebook_sizes: Sequence[int]) -> dict[str, Any]:
    """Utilization, entropy and prefix-collision numbers of ``codes`` (N, L) — the code-only half of
    :class:`QuantizerDiagnostics`, usable on any code table."""
    codes = torch.as_tensor(codes).long().cpu()
    n, num_levels = codes.shape
    if num_levels != len(codebook_sizes):
        raise ValueError(
            f"codes have {num_levels} levels but {len(codebook_sizes)} codebook sizes were given"
        )
    used, util, ent, nent, coll = [], [], [], [], []
    for level, k in enumerate(codebook_sizes):
        counts = torch.bincount(codes[:, level], minlength=k).double()
        p = counts[counts > 0] / n
        h = float(-(p * torch.log2(p)).sum()) if n else 0.0
        used.append(int((counts > 0).sum()))
        util.append(used[-1] / k)
        ent.append(h)
        nent.append(h / math.log2(k) if k > 1 else 0.0)
        _, inverse, group_counts = torch.unique(
            codes[:, : level + 1], dim=0, return_inverse=True, return_counts=True
        )
        coll.append(float((group_counts[inverse] > 1).double().mean()) if n else 0.0)
    _, full_counts = torch.unique(codes, dim=0, return_counts=True)
    return {
        "used_codes": used,
        "utilization": util,
        "entropy_bits": ent,
        "normalized_entropy": nent,
        "collision_rate": coll,
        "unique_codes": int(full_counts.numel()),
        "max_items_per_code": int(full_counts.max()) if n else 0,
    }


# ----------------------------------------------------------------------------------------------------------
# k-means building blocks (shared by the k-means quantizer and the RQ-VAE codebook initialisation)
# ----------------------------------------------------------------------------------------------------------


def _chunks(n: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, chunk_size):
        yield start, min(start + chunk_size, n)


def _sum_sq(x: torch.Tensor, chunk_size: int = 65536) -> float:
    """Sum of squares of all elements in float64, chunked over rows (no full-size float64 copy)."""
    return float(sum(x[s:e].double().square().sum() for s, e in _chunks(x.shape[0], chunk_size)))


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
    for s, e in _chunks(x.shape[0], chunk_size):
        xc = x[s:e]
        d = torch.addmm(c_sq, xc, centroids.T, beta=1.0, alpha=-2.0)
        val, idx = d.min(dim=1)
        labels[s:e] = idx
        mind[s:e] = (val + xsq[s:e]).clamp_min_(0.0)
    return labels, mind


def _nearest_exact(x: torch.Tensor, centroids: torch.Tensor, centroids64: torch.Tensor) -> torch.Tensor:
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
    for s, e in _chunks(x.shape[0], chunk_size):
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


# ----------------------------------------------------------------------------------------------------------
# base class: input checks, diagnostics, save / load
# ----------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Quantizer]] = {}


def _as_codebook_sizes(codebook_size: int | Sequence[int], num_levels: int) -> list[int]:
    sizes = (
        [int(codebook_size)] * num_levels
        if isinstance(codebook_size, int)
        else [int(k) for k in codebook_size]
    )
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if len(sizes) != num_levels:
        raise ValueError(f"codebook_size lists {len(sizes)} sizes for num_levels={num_levels}")
    if any(k < 1 for k in sizes):
        raise ValueError(f"codebook sizes must be >= 1, got {sizes}")
    return sizes


class Quantizer(abc.ABC):
    """Turns item embeddings (N, D) into semantic IDs (N, L): one code in ``[0, codebook_sizes[l])`` per level.

    Subclasses implement fitting, encoding, decoding and their tensors; this base class provides the input
    checks, :meth:`diagnostics` and the ``save_pretrained`` / ``from_pretrained`` folder format
    (``quantizer_config.json`` + ``quantizer.safetensors``).
    """

    quantizer_type: ClassVar[str]
    num_levels: int
    codebook_sizes: list[int]
    normalize: bool
    #: the codes of the embeddings passed to the last :meth:`fit` (N, L), like scikit-learn's ``labels_``
    codes_: torch.Tensor | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        qtype = cls.__dict__.get("quantizer_type")
        if isinstance(qtype, str):
            _REGISTRY[qtype] = cls

    # -- the interface ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def fit(self, embeddings: EmbeddingsLike, *, show_progress: bool = True) -> Quantizer:
        """Learn the codebooks from ``embeddings`` (N, D); the resulting codes are in ``self.codes_``."""

    @abc.abstractmethod
    def encode(self, embeddings: EmbeddingsLike) -> torch.Tensor:
        """Codes (N, L) int64 on CPU for (new) embeddings, without refitting."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        """Reconstruction (N, D) float32 on CPU of codes (N, L)."""

    @abc.abstractmethod
    def _residual_mse(self, x: torch.Tensor, codes: torch.Tensor) -> list[float]:
        """Per-level residual MSE for :meth:`diagnostics` (``x`` already pre-processed)."""

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Everything needed to rebuild this quantizer (JSON-serialisable), without ``quantizer_type``."""

    @abc.abstractmethod
    def _state_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors saved to ``quantizer.safetensors``."""

    @classmethod
    @abc.abstractmethod
    def _from_saved(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], source: str) -> Quantizer:
        """Rebuild from a saved config and tensors; ``source`` names the file for error messages."""

    # -- shared helpers ----------------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether the quantizer has codebooks (after :meth:`fit` or :meth:`from_pretrained`)."""
        return self._dim is not None

    @property
    def dim(self) -> int | None:
        """Dimension of the input embeddings (None before fitting)."""
        return self._dim

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit(embeddings) or from_pretrained(dir)"
            )

    def _prepare(self, embeddings: EmbeddingsLike, device: torch.device | str | None = None) -> torch.Tensor:
        """Validated float32 (N, D) tensor on ``device``, L2-normalised when ``self.normalize``."""
        x = as_float_embeddings(embeddings)
        if self._dim is not None and x.shape[1] != self._dim:
            raise ValueError(
                f"embeddings have dimension {x.shape[1]}, but this quantizer was fitted on {self._dim}"
            )
        if device is not None:
            x = x.to(device)
        return _l2_normalize(x) if self.normalize else x

    def _check_codes(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        c = torch.as_tensor(codes)
        if c.ndim != 2 or c.shape[1] != self.num_levels:
            raise ValueError(f"codes must have shape (N, {self.num_levels}), got {tuple(c.shape)}")
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got dtype {c.dtype}")
        c = c.long().cpu()
        for level, k in enumerate(self.codebook_sizes):
            bad = ((c[:, level] < 0) | (c[:, level] >= k)).nonzero()
            if bad.numel():
                row = int(bad[0])
                raise ValueError(
                    f"code row {row} has {int(c[row, level])} at level {level}, outside [0, {k}) "
                    f"(codebook sizes {self.codebook_sizes})"
                )
        return c

    def fit_encode(self, embeddings: EmbeddingsLike, *, show_progress: bool = True) -> torch.Tensor:
        """Fit on ``embeddings`` and return their codes (N, L) — the codes a CodeTable should be built from."""
        self.fit(embeddings, show_progress=show_progress)
        assert self.codes_ is not None
        return self.codes_.clone()

    def diagnostics(
        self, embeddings: EmbeddingsLike, codes: torch.Tensor | np.ndarray | None = None
    ) -> QuantizerDiagnostics:
        """Utilization, entropy, prefix collisions and residual MSE per level of ``codes`` (default:
        ``self.encode(embeddings)``) for ``embeddings``."""
        self._require_fitted()
        x = self._prepare(embeddings)
        c = self.encode(embeddings) if codes is None else self._check_codes(codes)
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"{c.shape[0]} code rows for {x.shape[0]} embeddings")
        stats = code_statistics(c, self.codebook_sizes)
        recon_sq = 0.0
        for s, e in _chunks(x.shape[0], 65536):
            recon_sq += _sum_sq(self.decode(c[s:e]) - x[s:e].cpu())
        return QuantizerDiagnostics(
            quantizer_type=self.quantizer_type,
            num_items=int(x.shape[0]),
            codebook_sizes=list(self.codebook_sizes),
            residual_mse=self._residual_mse(x, c),
            reconstruction_mse=recon_sq / x.numel(),
            input_mean_square=_sum_sq(x) / x.numel(),
            mse_space="latent" if self.quantizer_type == "rqvae" else "input",
            **stats,
        )

    # -- save / load -------------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write ``quantizer_config.json`` and ``quantizer.safetensors`` into ``directory`` (created)."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "quantizer_type": self.quantizer_type,
            "format_version": FORMAT_VERSION,
            **self.get_config(),
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._state_tensors().items()}
        _atomic_write(
            directory / WEIGHTS_NAME,
            lambda p: save_file(
                tensors, str(p), metadata={"quantizer_type": self.quantizer_type, "format": "pt"}
            ),
        )
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        _atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> Quantizer:
        """Reload a quantizer saved by :meth:`save_pretrained`. Called on :class:`Quantizer` itself it
        dispatches on the saved ``quantizer_type``; on a subclass the saved type must match."""
        config, tensors, weights_path = _read_saved(directory)
        qtype = config["quantizer_type"]
        target = _REGISTRY[qtype]
        if cls is not Quantizer and not issubclass(target, cls):
            raise ValueError(
                f"{Path(directory) / CONFIG_NAME} holds a {qtype!r} quantizer, not a {cls.__name__}; "
                "use load_quantizer() to load any type"
            )
        quantizer = target._from_saved(config, tensors, str(weights_path))
        if device is not None:
            quantizer._to_device(torch.device(device))
        return quantizer

    @abc.abstractmethod
    def _to_device(self, device: torch.device) -> None:
        """Move the codebooks to ``device``."""


def load_quantizer(
    directory: str | os.PathLike[str], *, device: str | torch.device | None = None
) -> Quantizer:
    """Load any quantizer saved with ``save_pretrained`` (dispatches on ``quantizer_type`` in its json)."""
    return Quantizer.from_pretrained(directory, device=device)


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, so an interrupted save never leaves a half file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_saved(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"quantizer directory {directory} does not exist (expected a folder written by save_pretrained)"
        )
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} is missing: a saved quantizer folder holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(written by Quantizer.save_pretrained); re-save the quantizer"
            )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{config_path} is not valid JSON ({err}); the file is corrupt, re-save the quantizer"
        ) from err
    if not isinstance(config, dict) or "quantizer_type" not in config:
        raise ValueError(
            f"{config_path} has no 'quantizer_type' key; it was not written by Quantizer.save_pretrained"
        )
    if config["quantizer_type"] not in _REGISTRY:
        raise ValueError(
            f"{config_path}: unknown quantizer_type {config['quantizer_type']!r} (known: {sorted(_REGISTRY)})"
        )
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{config_path} has format_version {config['format_version']}, newer than this genrec reads "
            f"({FORMAT_VERSION}); upgrade genrec"
        )
    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as err:  # safetensors raises its own SafetensorError (plus OSError) on bad files
        raise ValueError(f"{weights_path} is corrupt or truncated ({err}); re-save the quantizer") from err
    return config, tensors, weights_path


def _need(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], source: str) -> torch.Tensor:
    if name not in tensors:
        raise ValueError(f"{source} has no tensor {name!r}; the file does not match its {CONFIG_NAME}")
    t = tensors[name]
    if tuple(t.shape) != shape:
        raise ValueError(f"{source}: tensor {name!r} has shape {tuple(t.shape)}, the config implies {shape}")
    return t


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit-norm rows (computed in float64, returned float32); all-zero rows stay zero."""
    out = torch.empty_like(x)
    for s, e in _chunks(x.shape[0], 65536):
        x64 = x[s:e].double()
        out[s:e] = x64 / torch.linalg.vector_norm(x64, dim=1, keepdim=True).clamp_min(1e-12)
    return out


def as_float_embeddings(embeddings: EmbeddingsLike) -> torch.Tensor:
    """(N, D) float32 tensor from a tensor or array; rejects empty, non-2-D and non-finite input."""
    if isinstance(embeddings, np.ndarray):
        if not np.issubdtype(embeddings.dtype, np.number) or np.issubdtype(
            embeddings.dtype, np.complexfloating
        ):
            raise ValueError(f"embeddings must be a real numeric array, got dtype {embeddings.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    elif isinstance(embeddings, torch.Tensor):
        if embeddings.is_complex():
            raise ValueError("embeddings must be real, got a complex tensor")
        x = embeddings.detach().float()
    else:
        raise TypeError(
            f"embeddings must be a torch.Tensor or numpy.ndarray, got {type(embeddings).__name__}"
        )
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (num_items, dim), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings are empty (shape {tuple(x.shape)})")
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(
            f"embedding row {row} (0-based) contains NaN or inf ({int((~finite).sum())} bad rows in total); "
            "fix or drop those items before quantizing"
        )
    return x.contiguous()


# ----------------------------------------------------------------------------------------------------------
# residual (hierarchical) k-means — UNGER Algorithm 1
# ----------------------------------------------------------------------------------------------------------


class ResidualKMeansQuantizer(Quantizer):
    """UNGER's hierarchical k-means via residual quantization (Algorithm 1), the default quantizer.

    Level ``l`` runs k-means (k-means++ seeding from a seeded generator, Lloyd iterations) with ``K_l``
    clusters on the residuals left by levels ``< l``; each item takes its nearest centroid, which is
    subtracted before the next level. ``decode`` is the sum of the chosen centroids.

    Args:
        num_levels: code length L (UNGER: 3).
        codebook_size: K per level, an int or one int per level (UNGER: 256).
        max_iter / tol: Lloyd stopping rule (see :func:`kmeans`). 25 iterations is faiss' default; on
            Amazon Beauty (MiniLM) 50 iterations gave no lower residual MSE and no fewer collisions.
        seed: seeds k-means++ and the sub-sampling; same seed + same data -> identical codes.
        normalize: L2-normalise every embedding first. Off by default: UNGER quantizes the integrated
            embeddings as they are, and their norms carry information; MiniLM-style sentence embeddings are
            already unit-norm. ``decode`` then reconstructs the normalised vectors.
        resolve_collisions: ``"none"`` (plain Algorithm 1) or ``"reassign"``: after fitting, items that share
            their full code with another item move, greedily, to the nearest *free* last-level centroid under
            the same prefix (groups in ascending code order; within a group the item nearest to the centroid
            keeps it, the others move in order of their distance). It costs one small (colliding items x K)
            distance computation. Items with byte-identical embeddings cannot be told apart and are never
            separated; collisions that remain (identical embeddings, full prefixes) are resolved by the
            CodeTable's extra collision level. Moved items are remembered (their embedding and code), so
            ``encode`` of the fitted embeddings still returns exactly the fitted codes.
        max_points_per_centroid: k-means runs on a seeded random sample of at most this many points per
            cluster (``K_l`` x this; faiss' default rule); every item is still assigned to its nearest
            centroid. ``None`` = always all points. With the default 256 and K = 256, data sets below 65,536
            items (Amazon Beauty: 12,101) are clustered in full.
        chunk_size: rows per distance block (memory: chunk_size x K float32, 16 MiB at the defaults).
        device: where to compute ("cpu", "cuda", ...); default: the device of the embeddings passed to ``fit``.

    Fewer distinct points than ``K_l`` (tiny catalogues, deep levels whose residuals are all zero): every
    distinct point becomes a centroid and the remaining centroids duplicate them; duplicates never win an
    assignment (ties go to the lowest index), so they stay unused and ``diagnostics().utilization`` shows it.

    There is no size-balanced (equal-cluster) variant: a constrained assignment needs a min-cost-flow or
    auction solver per level, which is not cheap at 10^6 items; ``resolve_collisions="reassign"`` covers the
    practical need (unique codes).
    """

    quantizer_type = "residual_kmeans"

    def __init__(
        self,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 256,
        *,
        max_iter: int = 25,
        tol: float = 1e-4,
        seed: int = 2024,
        normalize: bool = False,
        resolve_collisions: str = "none",
        max_points_per_centroid: int | None = 256,
        chunk_size: int = 16384,
        device: str | torch.device | None = None,
    ) -> None:
        self.num_levels = int(num_levels)
        self.codebook_sizes = _as_codebook_sizes(codebook_size, self.num_levels)
        if resolve_collisions not in ("none", "reassign"):
            raise ValueError(f"resolve_collisions must be 'none' or 'reassign', got {resolve_collisions!r}")
        if max_iter < 1 or chunk_size < 1:
            raise ValueError("max_iter and chunk_size must be >= 1")
        if max_points_per_centroid is not None and max_points_per_centroid < 1:
            raise ValueError("max_points_per_centroid must be >= 1 or None")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.seed = int(seed)
        self.normalize = bool(normalize)
        self.resolve_collisions = resolve_collisions
        self.max_points_per_centroid = (
            None if max_points_per_centroid is None else int(max_points_per_centroid)
        )
        self.chunk_size = int(chunk_size)
        self.device = None if device is None else torch.device(device)
        self._dim: int | None = None
        self.centroids: list[torch.Tensor] = []
        self._centroids64: list[torch.Tensor] = []
        self._memo_embeddings = torch.zeros(0, 0)
        self._memo_codes = torch.zeros(0, self.num_levels, dtype=torch.long)
        self._memo_nearest = torch.zeros(0, self.num_levels, dtype=torch.long)
        self.codes_: torch.Tensor | None = None
        self.fit_info: dict[str, Any] = {}

    @classmethod
    def from_centroids(
        cls, centroids: Sequence[torch.Tensor | np.ndarray], **kwargs: Any
    ) -> ResidualKMeansQuantizer:
        """A quantizer with given per-level centroids (K_l, D), e.g. codebooks computed elsewhere."""
        cents = [as_float_embeddings(c) for c in centroids]
        if len({c.shape[1] for c in cents}) != 1:
            raise ValueError("all levels' centroids must have the same dimension")
        q = cls(num_levels=len(cents), codebook_size=[c.shape[0] for c in cents], **kwargs)
        q._set_centroids(cents)
        return q

    def _set_centroids(self, cents: list[torch.Tensor]) -> None:
        device = self.device or cents[0].device
        self.centroids = [c.to(device=device, dtype=torch.float32).contiguous() for c in cents]
        self._centroids64 = [c.double() for c in self.centroids]
        self._dim = int(self.centroids[0].shape[1])
        if self._memo_embeddings.shape[1] != self._dim:
            self._memo_embeddings = torch.zeros(0, self._dim)

    def _to_device(self, device: torch.device) -> None:
        self.device = device
        if self.centroids:
            self._set_centroids(self.centroids)

    @property
    def _compute_device(self) -> torch.device:
        return self.centroids[0].device

    # -- fit -----------------------------------------------------------------------------------------------

    def fit(self, embeddings: EmbeddingsLike, *, show_progress: bool = True) -> ResidualKMeansQuantizer:
        """Run Algorithm 1 on ``embeddings`` (N, D); codes of the fitted items land in ``self.codes_``."""
        start = time.perf_counter()
        self._dim = None  # refit from scratch (also accepts a new dimension)
        x = self._prepare(embeddings, self.device)
        device = x.device
        n = x.shape[0]
        generator = torch.Generator().manual_seed(self.seed)
        residual = x.clone()
        cents: list[torch.Tensor] = []
        codes = torch.empty(n, self.num_levels, dtype=torch.long)
        info: dict[str, Any] = {"num_items": n, "levels": []}
        sample_idx: torch.Tensor | None = None
        for level, k in enumerate(self.codebook_sizes):
            cap = None if self.max_points_per_centroid is None else self.max_points_per_centroid * k
            if cap is not None and n > cap:
                if sample_idx is None or sample_idx.numel() != cap:
                    sample_idx = torch.randperm(n, generator=generator)[:cap].sort().values.to(device)
                sample = residual[sample_idx]
            else:
                sample = residual
            res = kmeans(
                sample,
                k,
                max_iter=self.max_iter,
                tol=self.tol,
                generator=generator,
                chunk_size=self.chunk_size,
                show_progress=show_progress,
                desc=f"k-means level {level + 1}/{self.num_levels}",
            )
            cent = res.centroids.contiguous()
            cent64 = cent.double()
            cents.append(cent)
            for s, e in _chunks(n, self.chunk_size):
                lab = _nearest_exact(residual[s:e], cent, cent64)
                codes[s:e, level] = lab.cpu()
                residual[s:e] -= cent[lab]
            info["levels"].append(
                {
                    "k": k,
                    "fit_points": int(sample.shape[0]),
                    "n_iter": res.n_iter,
                    "converged": res.converged,
                    "n_reseeded": res.n_reseeded,
                    "n_distinct_seeds": res.n_distinct_seeds,
                    "used_codes": int(torch.unique(codes[:, level]).numel()),
                    "residual_mse": _sum_sq(residual) / residual.numel(),
                }
            )
            logger.info("k-means level %d/%d: %s", level + 1, self.num_levels, info["levels"][-1])
        del residual
        self._set_centroids(cents)
        self._memo_embeddings = torch.zeros(0, self._dim)
        self._memo_codes = torch.zeros(0, self.num_levels, dtype=torch.long)
        self._memo_nearest = torch.zeros(0, self.num_levels, dtype=torch.long)
        info["num_reassigned"] = 0
        if self.resolve_collisions == "reassign":
            codes = self._reassign_collisions(x, codes)
            info["num_reassigned"] = int(self._memo_codes.shape[0])
        _, full_counts = torch.unique(codes, dim=0, return_counts=True)
        info["colliding_items"] = int(full_counts[full_counts > 1].sum())
        info["fit_seconds"] = round(time.perf_counter() - start, 3)
        self.fit_info = info
        self.codes_ = codes
        return self

    def _reassign_collisions(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Greedy, deterministic move of colliding items to free leaves under their prefix (see class doc)."""
        uniq, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
        colliding = (counts[inverse] > 1).nonzero().flatten()
        if colliding.numel() == 0:
            return codes
        last = self.num_levels - 1
        k_last = self.codebook_sizes[last]
        cent64 = self._centroids64[last]
        # residual before the last level, computed exactly as encode() does
        xs = x[colliding.to(x.device)].clone()
        for level in range(last):
            xs -= self.centroids[level][codes[colliding, level].to(x.device)]
        xs64 = xs.double()
        # (m, K_last) float64 distances; an expanded GEMM keeps memory at m x K (m = colliding items)
        dist = torch.addmm((cent64 * cent64).sum(1), xs64, cent64.T, alpha=-2.0)
        dist = (dist + (xs64 * xs64).sum(1, keepdim=True)).clamp_min_(0.0).cpu()
        xs_bytes = [r.tobytes() for r in x[colliding.to(x.device)].cpu().numpy()]
        used: dict[tuple[int, ...], set[int]] = {}
        for row in uniq.tolist():
            used.setdefault(tuple(row[:last]), set()).add(row[last])
        new_codes = codes.clone()
        memo_rows: list[int] = []
        pos = {int(i): j for j, i in enumerate(colliding.tolist())}
        group_of = inverse[colliding].tolist()
        groups: dict[int, list[int]] = {}
        for item, g in zip(colliding.tolist(), group_of, strict=True):
            groups.setdefault(g, []).append(item)
        for g in sorted(groups):  # unique() returns codes sorted -> ascending code order
            members = groups[g]
            prefix = tuple(codes[members[0], :last].tolist())
            own = int(codes[members[0], last])
            members.sort(key=lambda i: (float(dist[pos[i], own]), i))
            classes: dict[bytes, list[int]] = {}
            for i in members:  # byte-identical embeddings move (or stay) together
                classes.setdefault(xs_bytes[pos[i]], []).append(i)
            for cls_items in list(classes.values())[1:]:  # the first class (nearest item) keeps the code
                free = used[prefix]
                if len(free) >= k_last:
                    break  # every leaf under this prefix is taken: the CodeTable's collision level handles it
                d = dist[pos[cls_items[0]]].clone()
                d[torch.tensor(sorted(free))] = math.inf
                target = int(d.argmin())
                free.add(target)
                for i in cls_items:
                    new_codes[i, last] = target
                memo_rows.append(cls_items[0])
        if memo_rows:
            idx = torch.tensor(memo_rows)
            self._memo_embeddings = x[idx.to(x.device)].cpu().clone()
            self._memo_codes = new_codes[idx].clone()
            self._memo_nearest = codes[idx].clone()
            logger.info("resolve_collisions='reassign': moved %d embeddings to free leaves", len(memo_rows))
        return new_codes

    # -- encode / decode -----------------------------------------------------------------------------------

    def encode(self, embeddings: EmbeddingsLike) -> torch.Tensor:
        """Nearest-centroid codes (N, L) level by level — the same computation as ``fit`` (plus the
        remembered collision moves), so ``encode(fit data) == codes_`` bit for bit."""
        self._require_fitted()
        x = self._prepare(embeddings, self._compute_device)
        n = x.shape[0]
        codes = torch.empty(n, self.num_levels, dtype=torch.long)
        for s, e in _chunks(n, self.chunk_size):
            r = x[s:e].clone()
            for level in range(self.num_levels):
                lab = _nearest_exact(r, self.centroids[level], self._centroids64[level])
                codes[s:e, level] = lab.cpu()
                r -= self.centroids[level][lab]
        if self._memo_codes.shape[0]:
            codes = self._apply_memo(x, codes)
        return codes

    def _apply_memo(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Give rows identical to a fitted item that ``reassign`` moved that item's code."""
        # candidate rows: those whose nearest code is one a moved item had
        if math.prod(self.codebook_sizes) < 2**62:
            mult = torch.tensor([math.prod(self.codebook_sizes[i + 1 :]) for i in range(self.num_levels)])
            cand = torch.isin((codes * mult).sum(1), (self._memo_nearest * mult).sum(1))
        else:  # pragma: no cover - only for absurd code spaces
            memo_keys = {tuple(r) for r in self._memo_nearest.tolist()}
            cand = torch.tensor([tuple(r) in memo_keys for r in codes.tolist()], dtype=torch.bool)
        rows = cand.nonzero().flatten()
        if rows.numel() == 0:
            return codes
        lookup = {r.tobytes(): j for j, r in enumerate(self._memo_embeddings.numpy())}
        out = codes.clone()
        for i, r in zip(rows.tolist(), x[rows.to(x.device)].cpu().numpy(), strict=True):
            j = lookup.get(r.tobytes())
            if j is not None:
                out[i] = self._memo_codes[j]
        return out

    def decode(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        """Sum of the chosen centroids (N, D) float32 on CPU."""
        self._require_fitted()
        c = self._check_codes(codes).to(self._compute_device)
        out = torch.zeros(c.shape[0], self._dim, device=self._compute_device)
        for level in range(self.num_levels):
            out += self.centroids[level][c[:, level]]
        return out.cpu()

    def _residual_mse(self, x: torch.Tensor, codes: torch.Tensor) -> list[float]:
        totals = [0.0] * self.num_levels
        for s, e in _chunks(x.shape[0], self.chunk_size):
            r = x[s:e].to(self._compute_device).clone()
            c = codes[s:e].to(self._compute_device)
            for level in range(self.num_levels):
                r -= self.centroids[level][c[:, level]]
                totals[level] += _sum_sq(r)
        return [t / x.numel() for t in totals]

    # -- save / load ---------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, the input dimension and the last fit's statistics (``fit_info``)."""
        return {
            "num_levels": self.num_levels,
            "codebook_sizes": list(self.codebook_sizes),
            "dim": self._dim,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "seed": self.seed,
            "normalize": self.normalize,
            "resolve_collisions": self.resolve_collisions,
            "max_points_per_centroid": self.max_points_per_centroid,
            "chunk_size": self.chunk_size,
            "num_reassigned": int(self._memo_codes.shape[0]),
            "fit_info": self.fit_info,
        }

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {f"centroids.{level}": c for level, c in enumerate(self.centroids)}
        tensors["reassigned.embeddings"] = self._memo_embeddings
        tensors["reassigned.codes"] = self._memo_codes
        tensors["reassigned.nearest_codes"] = self._memo_nearest
        return tensors

    @classmethod
    def _from_saved(
        cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
    ) -> ResidualKMeansQuantizer:
        try:
            q = cls(
                num_levels=config["num_levels"],
                codebook_size=config["codebook_sizes"],
                max_iter=config["max_iter"],
                tol=config["tol"],
                seed=config["seed"],
                normalize=config["normalize"],
                resolve_collisions=config["resolve_collisions"],
                max_points_per_centroid=config["max_points_per_centroid"],
                chunk_size=config["chunk_size"],
            )
            dim = int(config["dim"])
            m = int(config["num_reassigned"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: its {CONFIG_NAME} is incomplete or invalid ({err!r})") from err
        q._set_centroids(
            [_need(tensors, f"centroids.{lv}", (k, dim), source) for lv, k in enumerate(q.codebook_sizes)]
        )
        q._memo_embeddings = _need(tensors, "reassigned.embeddings", (m, dim), source).float()
        q._memo_codes = _need(tensors, "reassigned.codes", (m, q.num_levels), source).long()
        q._memo_nearest = _need(tensors, "reassigned.nearest_codes", (m, q.num_levels), source).long()
        q.fit_info = dict(config.get("fit_info") or {})
        return q


# ----------------------------------------------------------------------------------------------------------
# RQ-VAE (TIGER)
# ----------------------------------------------------------------------------------------------------------


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAEQuantizer(Quantizer, nn.Module):
    """TIGER's RQ-VAE: MLP encoder -> residual quantization by L learned codebooks -> MLP decoder.

    Training (:meth:`training_step`, shared by :meth:`fit` and ``genrec.trainers.rqvae.train_rqvae``)
    minimises ``||x - dec(z_q)||^2 + sum_l ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2`` (reconstruction,
    codebook and commitment terms; squared norms averaged over the batch), with the straight-through
    estimator carrying reconstruction gradients from ``z_q`` to the encoder. Codebooks are initialised by
    k-means on the first training batch's residuals, level by level; a code that no batch used for
    ``dead_code_steps`` consecutive training steps is re-seeded with a random residual of the current batch.
    The quantization itself always runs in float32 (also under mixed precision).

    Codes are in the latent space, so the diagnostics' residual MSE is a latent-space number; ``decode``
    runs the decoder on the summed codewords and returns an input-space reconstruction. ``encode`` runs the
    encoder in float64, so an item's code does not depend on the other items in its batch.

    Args:
        in_dim: embedding dimension; ``None`` = taken from the first ``fit`` / ``train_rqvae`` data.
        hidden_dims / latent_dim: encoder widths (the decoder mirrors them); TIGER: [512, 256, 128] -> 32.
        num_levels / codebook_size: L and K per level (TIGER: 3 x 256).
        beta: commitment weight (0.25).
        dead_code_steps: restart threshold in training steps (0 disables restarts).
        epochs / batch_size / lr: what :meth:`fit` trains with (Adam).
        seed: weights, k-means initialisation, shuffling and restarts are all drawn from it.
        normalize: L2-normalise inputs first (off by default).
    """

    quantizer_type = "rqvae"

    def __init__(
        self,
        in_dim: int | None = None,
        hidden_dims: Sequence[int] = (512, 256, 128),
        latent_dim: int = 32,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 256,
        *,
        beta: float = 0.25,
        dead_code_steps: int = 50,
        epochs: int = 50,
        batch_size: int = 1024,
        lr: float = 1e-3,
        seed: int = 2024,
        normalize: bool = False,
        kmeans_init_iters: int = 25,
        chunk_size: int = 4096,
    ) -> None:
        nn.Module.__init__(self)
        self.num_levels = int(num_levels)
        self.codebook_sizes = _as_codebook_sizes(codebook_size, self.num_levels)
        self.hidden_dims = [int(h) for h in hidden_dims]
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.dead_code_steps = int(dead_code_steps)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.seed = int(seed)
        self.normalize = bool(normalize)
        self.kmeans_init_iters = int(kmeans_init_iters)
        self.chunk_size = int(chunk_size)
        if min(self.latent_dim, self.batch_size, self.epochs) < 1:
            raise ValueError(
                f"latent_dim, batch_size and epochs must be >= 1 (got {latent_dim}, {batch_size}, {epochs})"
            )
        self._dim: int | None = None
        self.encoder: nn.Sequential | None = None
        self.decoder: nn.Sequential | None = None
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.zeros(k, self.latent_dim)) for k in self.codebook_sizes]
        )
        self.register_buffer("codebooks_initialized", torch.zeros((), dtype=torch.bool))
        for level, k in enumerate(self.codebook_sizes):
            self.register_buffer(
                f"steps_since_used_{level}", torch.zeros(k, dtype=torch.long), persistent=False
            )
        self._restart_generator = torch.Generator().manual_seed(self.seed + 1)
        self.codes_ = None
        self.fit_info: dict[str, Any] = {}
        if in_dim is not None:
            self.build(int(in_dim))

    def build(self, in_dim: int) -> None:
        """Create the encoder/decoder for ``in_dim`` inputs with seeded weights (no-op when already built)."""
        if self._dim is not None:
            if in_dim != self._dim:
                raise ValueError(f"this RQ-VAE was built for {self._dim}-d inputs, got {in_dim}-d")
            return
        device = self.codebooks[0].device
        self.encoder = _mlp([in_dim, *self.hidden_dims, self.latent_dim]).to(device)
        self.decoder = _mlp([self.latent_dim, *reversed(self.hidden_dims), in_dim]).to(device)
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for module in [*self.encoder, *self.decoder]:
                if isinstance(module, nn.Linear):  # torch's default Linear init, drawn from our generator
                    w = torch.empty_like(module.weight, device="cpu")
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
                    bound = 1.0 / math.sqrt(module.in_features)
                    b = torch.empty_like(module.bias, device="cpu").uniform_(-bound, bound, generator=g)
                    module.weight.copy_(w)
                    module.bias.copy_(b)
            for cb in self.codebooks:
                cb.copy_(torch.empty(cb.shape).uniform_(-1.0 / cb.shape[0], 1.0 / cb.shape[0], generator=g))
        self._dim = int(in_dim)

    # -- training --------------------------------------------------------------------------------------------

    def _init_codebooks(self, z: torch.Tensor) -> None:
        """k-means on the first batch's residuals, level by level (TIGER's initialisation)."""
        g = torch.Generator().manual_seed(self.seed + 2)
        r = z.detach().float()
        if r.shape[0] < max(self.codebook_sizes):
            logger.warning(
                "RQ-VAE codebook init: first batch has %d rows for %d codes; some codes start as duplicates "
                "(dead-code restarts will re-seed them)",
                r.shape[0],
                max(self.codebook_sizes),
            )
        with torch.no_grad():
            for level, k in enumerate(self.codebook_sizes):
                res = kmeans(r, k, max_iter=self.kmeans_init_iters, generator=g, chunk_size=self.chunk_size)
                self.codebooks[level].copy_(res.centroids)
                r = r - res.centroids[res.labels]
            self.codebooks_initialized.fill_(True)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """Training losses for one batch (see :meth:`training_step`); ``forward`` so that Accelerate / DDP
        wrappers see the call."""
        x = _batch_tensor(batch)
        if self.encoder is None or self.decoder is None:
            self.build(x.shape[1])
        assert self.encoder is not None and self.decoder is not None
        x = x.to(self.codebooks[0].device)
        if self.normalize:
            x = _l2_normalize(x)
        z = self.encoder(x)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.training and not bool(self.codebooks_initialized):
                self._init_codebooks(z)
            r = z
            quantized = torch.zeros_like(z)
            codebook_loss = z.new_zeros(())
            commitment_loss = z.new_zeros(())
            restarted = 0
            for level, cb in enumerate(self.codebooks):
                if self.training and self.dead_code_steps > 0:
                    restarted += self._restart_dead_codes(level, r.detach())
                w = cb.float()
                idx = _nearest_exact(r.detach(), w.detach(), w.detach().double())
                e = w[idx]
                codebook_loss = codebook_loss + (e - r.detach()).square().sum(1).mean()
                commitment_loss = commitment_loss + (r - e.detach()).square().sum(1).mean()
                if self.training:
                    with torch.no_grad():
                        steps = getattr(self, f"steps_since_used_{level}")
                        steps += 1
                        steps[idx] = 0
                quantized = quantized + e.detach()
                r = r - e.detach()
            z_q = z + (quantized - z).detach()  # straight-through
        x_hat = self.decoder(z_q)
        recon = (x_hat.float() - x.float()).square().sum(1).mean()
        loss = recon + codebook_loss + self.beta * commitment_loss
        return {
            "loss": loss,
            "reconstruction_loss": recon.detach(),
            "codebook_loss": codebook_loss.detach(),
            "commitment_loss": commitment_loss.detach(),
            "restarted_codes": torch.tensor(restarted),
        }

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Losses for one batch — ``loss`` (to backpropagate), ``reconstruction_loss``, ``codebook_loss``,
        ``commitment_loss`` and ``restarted_codes``. Initialises the codebooks on the first call and restarts
        dead codes (in place, before they are used) when the module is in training mode."""
        return self(batch)

    def _restart_dead_codes(self, level: int, residual: torch.Tensor) -> int:
        steps = getattr(self, f"steps_since_used_{level}")
        dead = (steps >= self.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        pick = torch.randint(residual.shape[0], (dead.numel(),), generator=self._restart_generator)
        with torch.no_grad():
            self.codebooks[level][dead] = residual[pick.to(residual.device)].to(self.codebooks[level].dtype)
            steps[dead] = 0
        return int(dead.numel())

    def fit(self, embeddings: EmbeddingsLike, *, show_progress: bool = True) -> RQVAEQuantizer:
        """Train with a plain seeded torch loop (Adam, ``epochs`` x ``batch_size``) on the module's device;
        codes of the fitted items land in ``self.codes_``. Training continues from the current weights: a
        fresh quantizer with the same seed and data reproduces a fit exactly."""
        start = time.perf_counter()
        x = as_float_embeddings(embeddings)
        self.build(x.shape[1])
        device = self.codebooks[0].device
        x = x.to(device)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(self.seed)
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        self.train()
        history: list[dict[str, float]] = []
        bar = tqdm(
            total=self.epochs * steps_per_epoch, desc="RQ-VAE", disable=None if show_progress else True
        )
        for epoch in range(self.epochs):
            perm = torch.randperm(n, generator=g).to(device)
            totals: dict[str, float] = {}
            for s, e in _chunks(n, self.batch_size):
                out = self.training_step(x[perm[s:e]])
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                for key, v in out.items():
                    totals[key] = totals.get(key, 0.0) + float(v.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{float(out['loss'].detach()):.4g}")
            history.append({"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in totals.items()}})
        bar.close()
        self.eval()
        self.codes_ = self.encode(x)
        self.fit_info = {
            "num_items": n,
            "epochs": self.epochs,
            "history": history,
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return self

    # -- encode / decode -----------------------------------------------------------------------------------

    def _latent64(self, x: torch.Tensor) -> torch.Tensor:
        assert self.encoder is not None
        params = {k: v.double() for k, v in self.encoder.named_parameters()}
        return torch.func.functional_call(self.encoder, params, (x.double(),))

    @torch.no_grad()
    def encode(self, embeddings: EmbeddingsLike) -> torch.Tensor:
        """Codes (N, L): encoder (float64) then nearest codeword per level on the latent residuals."""
        self._require_fitted()
        device = self.codebooks[0].device
        x = self._prepare(embeddings, device)
        codes = torch.empty(x.shape[0], self.num_levels, dtype=torch.long)
        books = [cb.detach().float() for cb in self.codebooks]
        books64 = [b.double() for b in books]
        for s, e in _chunks(x.shape[0], self.chunk_size):
            r = self._latent64(x[s:e])
            for level in range(self.num_levels):
                # screen in float32, re-rank in float64: same rule as k-means, batch-independent
                lab = _nearest_exact(r.float(), books[level], books64[level])
                codes[s:e, level] = lab.cpu()
                r = r - books64[level][lab]
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        """Decoder output (N, in_dim) for the sum of the chosen codewords."""
        self._require_fitted()
        assert self.decoder is not None
        c = self._check_codes(codes).to(self.codebooks[0].device)
        z_q = sum(self.codebooks[level].detach().float()[c[:, level]] for level in range(self.num_levels))
        return self.decoder(z_q).float().cpu()

    @torch.no_grad()
    def _residual_mse(self, x: torch.Tensor, codes: torch.Tensor) -> list[float]:
        device = self.codebooks[0].device
        totals = [0.0] * self.num_levels
        for s, e in _chunks(x.shape[0], self.chunk_size):
            r = self._latent64(x[s:e].to(device))
            c = codes[s:e].to(device)
            for level in range(self.num_levels):
                r = r - self.codebooks[level].detach().double()[c[:, level]]
                totals[level] += float(r.square().sum())
        return [t / (x.shape[0] * self.latent_dim) for t in totals]

    def diagnostics(
        self, embeddings: EmbeddingsLike, codes: torch.Tensor | np.ndarray | None = None
    ) -> QuantizerDiagnostics:
        """See :meth:`Quantizer.diagnostics`; residual MSE is measured in the latent space."""
        was_training = self.training
        self.eval()
        try:
            return Quantizer.diagnostics(self, embeddings, codes)
        finally:
            self.train(was_training)

    def _to_device(self, device: torch.device) -> None:
        self.to(device)

    @property
    def is_fitted(self) -> bool:
        """Built and with initialised (trained or loaded) codebooks."""
        return self._dim is not None and bool(self.codebooks_initialized)

    # -- save / load -------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """Architecture, training defaults and the last fit's statistics."""
        return {
            "in_dim": self._dim,
            "hidden_dims": list(self.hidden_dims),
            "latent_dim": self.latent_dim,
            "num_levels": self.num_levels,
            "codebook_sizes": list(self.codebook_sizes),
            "beta": self.beta,
            "dead_code_steps": self.dead_code_steps,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "normalize": self.normalize,
            "kmeans_init_iters": self.kmeans_init_iters,
            "chunk_size": self.chunk_size,
            "fit_info": self.fit_info,
        }

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())

    @classmethod
    def _from_saved(
        cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
    ) -> RQVAEQuantizer:
        try:
            q = cls(
                in_dim=int(config["in_dim"]),
                hidden_dims=config["hidden_dims"],
                latent_dim=config["latent_dim"],
                num_levels=config["num_levels"],
                codebook_size=config["codebook_sizes"],
                beta=config["beta"],
                dead_code_steps=config["dead_code_steps"],
                epochs=config["epochs"],
                batch_size=config["batch_size"],
                lr=config["lr"],
                seed=config["seed"],
                normalize=config["normalize"],
                kmeans_init_iters=config["kmeans_init_iters"],
                chunk_size=config["chunk_size"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: its {CONFIG_NAME} is incomplete or invalid ({err!r})") from err
        try:
            q.load_state_dict(tensors, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{source} does not match its {CONFIG_NAME}: {err}") from err
        q.fit_info = dict(config.get("fit_info") or {})
        q.eval()
        return q


def _batch_tensor(batch: Any) -> torch.Tensor:
    """The embeddings of a training batch: a tensor, a (tensor, ...) tuple/list (TensorDataset) or a dict
    with an ``"embeddings"`` key."""
    if isinstance(batch, dict):
        batch = batch["embeddings"]
    elif isinstance(batch, (list, tuple)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.ndim != 2:
        raise ValueError(
            "an RQ-VAE batch is a (B, D) tensor, a tuple whose first item is one, or {'embeddings': ...}"
        )
    return batch.float()


# ----------------------------------------------------------------------------------------------------------
# random codes (UNGER §4.6 ablation baseline)
# ----------------------------------------------------------------------------------------------------------


class RandomQuantizer(Quantizer):
    """Random codes, the "Random Assignment" baseline of UNGER's quantization ablation.

    An item's code is a keyed hash: BLAKE2b of its embedding's bytes (float32, little-endian, after optional
    normalisation, with -0.0 folded into 0.0), keyed by ``seed``; level ``l`` takes 8 bytes of the digest
    modulo ``K_l``. So codes are uniformly random across items, reproducible for a seed, and ``encode`` of a
    new item needs no state beyond the seed — the same embedding always gets the same code (items with
    identical embeddings collide, like in every content-based quantizer). ``fit`` additionally stores, per
    level, the mean residual of the items holding each code, so that :meth:`decode` and the diagnostics
    show how much (little) such codes explain.
    """

    quantizer_type = "random"

    def __init__(
        self,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 256,
        *,
        seed: int = 2024,
        normalize: bool = False,
    ) -> None:
        self.num_levels = int(num_levels)
        self.codebook_sizes = _as_codebook_sizes(codebook_size, self.num_levels)
        if self.num_levels > 8:
            raise ValueError(
                f"RandomQuantizer supports at most 8 levels (one BLAKE2b digest), got {num_levels}"
            )
        self.seed = int(seed)
        self.normalize = bool(normalize)
        self._dim: int | None = None
        self.centroids: list[torch.Tensor] = []
        self.codes_ = None
        self.fit_info: dict[str, Any] = {}

    def _hash_codes(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.cpu().numpy(), dtype="<f4") + np.float32(0.0)  # -0.0 -> 0.0
        key = struct.pack("<q", self.seed)
        width = arr.shape[1] * 4
        buf = memoryview(np.ascontiguousarray(arr)).cast("B")
        out = np.empty((arr.shape[0], self.num_levels), dtype=np.int64)
        sizes = self.codebook_sizes
        for i in range(arr.shape[0]):
            digest = hashlib.blake2b(
                buf[i * width : (i + 1) * width], digest_size=8 * self.num_levels, key=key
            ).digest()
            for level, k in enumerate(sizes):
                out[i, level] = int.from_bytes(digest[8 * level : 8 * level + 8], "little") % k
        return torch.from_numpy(out)

    def fit(self, embeddings: EmbeddingsLike, *, show_progress: bool = True) -> RandomQuantizer:
        """Hash codes for ``embeddings`` and per-code mean residuals (for ``decode`` / diagnostics)."""
        self._dim = None
        x = self._prepare(embeddings).cpu()
        codes = self._hash_codes(x)
        cents: list[torch.Tensor] = []
        for level, k in enumerate(self.codebook_sizes):
            sums = torch.zeros(k, x.shape[1], dtype=torch.float64)
            for s, e in _chunks(x.shape[0], 65536):
                r = x[s:e].double()
                for j, c in enumerate(cents):
                    r -= c.double()[codes[s:e, j]]
                sums.index_put_((codes[s:e, level],), r, accumulate=True)
            counts = torch.bincount(codes[:, level], minlength=k).clamp_min(1).unsqueeze(1)
            cents.append((sums / counts).float())
        self.centroids = cents
        self._dim = int(x.shape[1])
        self.codes_ = codes
        self.fit_info = {"num_items": int(x.shape[0])}
        return self

    def encode(self, embeddings: EmbeddingsLike) -> torch.Tensor:
        """Keyed-hash codes (N, L) — deterministic given the seed and each embedding's bytes."""
        self._require_fitted()
        return self._hash_codes(self._prepare(embeddings))

    def decode(self, codes: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
        """Sum of the per-code mean residuals (N, D)."""
        self._require_fitted()
        c = self._check_codes(codes)
        out = torch.zeros(c.shape[0], self._dim)
        for level in range(self.num_levels):
            out += self.centroids[level][c[:, level]]
        return out

    def _to_device(self, device: torch.device) -> None:
        """Hashing and the small per-code means stay on the CPU whatever ``device`` is asked for."""
        return None

    def _residual_mse(self, x: torch.Tensor, codes: torch.Tensor) -> list[float]:
        totals = [0.0] * self.num_levels
        for s, e in _chunks(x.shape[0], 65536):
            r = x[s:e].cpu().double()
            for level in range(self.num_levels):
                r -= self.centroids[level].double()[codes[s:e, level]]
                totals[level] += float(r.square().sum())
        return [t / x.numel() for t in totals]

    def get_config(self) -> dict[str, Any]:
        """Levels, sizes, seed, normalisation and the input dimension."""
        return {
            "num_levels": self.num_levels,
            "codebook_sizes": list(self.codebook_sizes),
            "dim": self._dim,
            "seed": self.seed,
            "normalize": self.normalize,
            "fit_info": self.fit_info,
        }

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"centroids.{level}": c for level, c in enumerate(self.centroids)}

    @classmethod
    def _from_saved(
        cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
    ) -> RandomQuantizer:
        try:
            q = cls(
                num_levels=config["num_levels"],
                codebook_size=config["codebook_sizes"],
                seed=config["seed"],
                normalize=config["normalize"],
            )
            dim = int(config["dim"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: its {CONFIG_NAME} is incomplete or invalid ({err!r})") from err
        q.centroids = [
            _need(tensors, f"centroids.{lv}", (k, dim), source).float()
            for lv, k in enumerate(q.codebook_sizes)
        ]
        q._dim = dim
        q.fit_info = dict(config.get("fit_info") or {})
        return q


__all__ = [
    "KMeansResult",
    "Quantizer",
    "QuantizerDiagnostics",
    "RQVAEQuantizer",
    "RandomQuantizer",
    "ResidualKMeansQuantizer",
    "code_statistics",
    "kmeans",
    "load_quantizer",
]
