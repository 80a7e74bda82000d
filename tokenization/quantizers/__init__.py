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

These modules import only torch, numpy, safetensors, transformers (for its progress bar) and the standard
library, so that they stay usable without the rest of genrec.
One file per idea: ``base`` (interface, registry, I/O), ``kmeans``, ``residual_kmeans``, ``rqvae``,
``random_codes`` (not ``random``, which would read as the standard library's module).
"""

from .base import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    Quantizer,
    QuantizerDiagnostics,
    as_float_embeddings,
    code_statistics,
    load_quantizer,
)
from .kmeans import KMeansResult, kmeans
from .random_codes import RandomQuantizer
from .residual_kmeans import ResidualKMeansQuantizer
from .rqvae import RQVAEQuantizer

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "KMeansResult",
    "Quantizer",
    "QuantizerDiagnostics",
    "RQVAEQuantizer",
    "RandomQuantizer",
    "ResidualKMeansQuantizer",
    "as_float_embeddings",
    "code_statistics",
    "kmeans",
    "load_quantizer",
]
