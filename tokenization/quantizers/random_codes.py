"""Random codes per item: the "Random Assignment" baseline of UNGER's quantization ablation (§4.6)."""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import CONFIG_NAME, EmbeddingsLike, Quantizer, as_codebook_sizes, required_tensor
from .kmeans import row_chunks

logger = logging.getLogger(__name__)

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
        self.codebook_sizes = as_codebook_sizes(codebook_size, self.num_levels)
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
            for s, e in row_chunks(x.shape[0], 65536):
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
        for s, e in row_chunks(x.shape[0], 65536):
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
            required_tensor(tensors, f"centroids.{lv}", (k, dim), source).float()
            for lv, k in enumerate(q.codebook_sizes)
        ]
        q._dim = dim
        q.fit_info = dict(config.get("fit_info") or {})
        return q
