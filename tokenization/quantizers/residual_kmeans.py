"""UNGER's unified codes: hierarchical k-means through residual quantization (§3.3.5, Algorithm 1)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import (
    CONFIG_NAME,
    EmbeddingsLike,
    Quantizer,
    as_codebook_sizes,
    as_float_embeddings,
    required_tensor,
)
from .kmeans import kmeans, nearest_exact, row_chunks, sum_sq

logger = logging.getLogger(__name__)

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
        self.codebook_sizes = as_codebook_sizes(codebook_size, self.num_levels)
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
            for s, e in row_chunks(n, self.chunk_size):
                lab = nearest_exact(residual[s:e], cent, cent64)
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
                    "residual_mse": sum_sq(residual) / residual.numel(),
                }
            )
            stats = info["levels"][-1]
            logger.info(
                "k-means level %d/%d: %s of %s codes used, %s iterations%s, residual MSE %.4g", level + 1,
                self.num_levels, stats.get("used_codes", "?"), stats.get("k", "?"), stats.get("n_iter", "?"),
                "" if stats.get("converged", True) else " (iteration cap reached)", stats.get("residual_mse", float("nan")),
            )
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
        for s, e in row_chunks(n, self.chunk_size):
            r = x[s:e].clone()
            for level in range(self.num_levels):
                lab = nearest_exact(r, self.centroids[level], self._centroids64[level])
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
        for s, e in row_chunks(x.shape[0], self.chunk_size):
            r = x[s:e].to(self._compute_device).clone()
            c = codes[s:e].to(self._compute_device)
            for level in range(self.num_levels):
                r -= self.centroids[level][c[:, level]]
                totals[level] += sum_sq(r)
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
            [required_tensor(tensors, f"centroids.{lv}", (k, dim), source) for lv, k in enumerate(q.codebook_sizes)]
        )
        q._memo_embeddings = required_tensor(tensors, "reassigned.embeddings", (m, dim), source).float()
        q._memo_codes = required_tensor(tensors, "reassigned.codes", (m, q.num_levels), source).long()
        q._memo_nearest = required_tensor(tensors, "reassigned.nearest_codes", (m, q.num_levels), source).long()
        q.fit_info = dict(config.get("fit_info") or {})
        return q
