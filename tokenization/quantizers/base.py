"""The quantizer interface: :class:`Quantizer` (input checks, diagnostics, save / load, the registry that
:func:`load_quantizer` reads), code statistics and the on-disk format constants."""

from __future__ import annotations

import abc
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .kmeans import row_chunks, sum_sq

logger = logging.getLogger(__name__)

CONFIG_NAME = "quantizer_config.json"
WEIGHTS_NAME = "quantizer.safetensors"
FORMAT_VERSION = 1


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
# base class: input checks, diagnostics, save / load
# ----------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Quantizer]] = {}


def as_codebook_sizes(codebook_size: int | Sequence[int], num_levels: int) -> list[int]:
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
        return l2_normalize(x) if self.normalize else x

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
        for s, e in row_chunks(x.shape[0], 65536):
            recon_sq += sum_sq(self.decode(c[s:e]) - x[s:e].cpu())
        return QuantizerDiagnostics(
            quantizer_type=self.quantizer_type,
            num_items=int(x.shape[0]),
            codebook_sizes=list(self.codebook_sizes),
            residual_mse=self._residual_mse(x, c),
            reconstruction_mse=recon_sq / x.numel(),
            input_mean_square=sum_sq(x) / x.numel(),
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


def required_tensor(tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], source: str) -> torch.Tensor:
    if name not in tensors:
        raise ValueError(f"{source} has no tensor {name!r}; the file does not match its {CONFIG_NAME}")
    t = tensors[name]
    if tuple(t.shape) != shape:
        raise ValueError(f"{source}: tensor {name!r} has shape {tuple(t.shape)}, the config implies {shape}")
    return t


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit-norm rows (computed in float64, returned float32); all-zero rows stay zero."""
    out = torch.empty_like(x)
    for s, e in row_chunks(x.shape[0], 65536):
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
