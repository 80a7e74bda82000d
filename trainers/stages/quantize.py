"""The quantization stage: item embeddings -> quantizer -> CodeTable -> SemanticIDTokenizer, on disk.

Only sequencing of library calls lives here (the maths is in :mod:`genrec.tokenization.quantizers`, the
uniqueness rule in :class:`genrec.tokenization.code_table.CodeTable`). The output folder is what Stage II
and the LLM path read:

    OUT/quantizer/          quantizer_config.json + quantizer.safetensors (encodes cold-start items later)
    OUT/tokenizer/          SemanticIDTokenizer files + code_table.parquet/json (content-hashed)
    OUT/quantize.json       diagnostics: per-level utilisation, entropy, collision rate, MSE; timings; its
                            paths relative to OUT (:mod:`genrec.trainers.engine.files`)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.trainers.engine.files import recorded_paths, write_text_atomic

logger = logging.getLogger(__name__)

QUANTIZERS = ("residual_kmeans", "rqvae", "random")


@dataclass
class QuantizeResult:
    """What the quantization stage produced (paths are inside the output folder)."""

    output_dir: Path
    tokenizer_dir: Path
    quantizer_dir: Path
    num_items: int
    num_levels: int
    codebook_sizes: list[int]
    collision_rate: float
    max_collision_group: int
    fit_seconds: float
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings)."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        return out


def check_quantizer_settings(num_levels: Any, codebook_size: Any) -> None:
    """``ValueError`` unless ``num_levels`` is an int >= 1 and ``codebook_size`` an int >= 1 (or one such size per
    level): called before any training, so that impossible settings never wait for Stage I to finish."""
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels (--levels) must be an int >= 1 (code levels per item), got {num_levels!r}")
    sizes = [codebook_size] if isinstance(codebook_size, int | bool) else list(codebook_size)
    if isinstance(codebook_size, list | tuple) and len(sizes) != num_levels:
        raise ValueError(f"codebook_size lists {len(sizes)} sizes for num_levels={num_levels}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(
                f"codebook_size (--codebook-size) must be an int >= 1 (codes per level), got {codebook_size!r}"
            )


def build_quantizer(method: str, *, num_levels: int, codebook_size: int, seed: int, **kwargs: Any):
    """A fresh quantizer of kind ``method`` ("residual_kmeans" default, "rqvae", "random")."""
    from genrec.tokenization.quantizers import RandomQuantizer, ResidualKMeansQuantizer, RQVAEQuantizer

    classes = {"residual_kmeans": ResidualKMeansQuantizer, "rqvae": RQVAEQuantizer, "random": RandomQuantizer}
    if method not in classes:
        raise ValueError(f"unknown quantizer {method!r}; choose one of {', '.join(QUANTIZERS)}")
    return classes[method](num_levels=num_levels, codebook_size=codebook_size, seed=seed, **kwargs)


def quantize_embeddings(
    embeddings: str | Path,
    output_dir: str | Path,
    *,
    method: str = "residual_kmeans",
    num_levels: int = 3,
    codebook_size: int = 256,
    seed: int = 2024,
    resolve_collisions: str = "none",
    always_append_collision_level: bool = False,
    quantizer_config: dict[str, Any] | None = None,
    item_counts: Mapping[str, int] | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> QuantizeResult:
    """Fit a quantizer on an ``ItemEmbeddings`` file and write quantizer, tokenizer and code table.

    ``resolve_collisions="reassign"`` (residual k-means only) moves colliding items to free leaves before
    the CodeTable adds its collision level for whatever still collides. ``quantizer_config``: further
    arguments of the quantizer's class (e.g. an RQ-VAE's ``epochs``), recorded in ``quantize.json``.
    ``item_counts`` (item id -> training count; missing ids count 0): the collision level numbers each group's
    most frequent item 0 instead of following the embeddings' order (``CodeTable.from_codes(collision_order=)``).
    """
    from genrec.data_scripts.embeddings import ItemEmbeddings
    from genrec.tokenization.code_table import CodeTable
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    check_quantizer_settings(num_levels, codebook_size)
    if method not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {method!r}; choose one of {', '.join(QUANTIZERS)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} is not empty; pass overwrite=True (--overwrite) to replace it")
    emb = ItemEmbeddings.load(embeddings)
    extra: dict[str, Any] = dict(quantizer_config or {})
    if resolve_collisions != "none":
        if method != "residual_kmeans":
            raise ValueError("resolve_collisions='reassign' is only available for residual_kmeans")
        extra["resolve_collisions"] = resolve_collisions
    quantizer = build_quantizer(method, num_levels=num_levels, codebook_size=codebook_size, seed=seed, **extra)

    start = time.perf_counter()
    codes = quantizer.fit_encode(emb.embeddings, show_progress=show_progress)
    fit_seconds = time.perf_counter() - start
    diagnostics = quantizer.diagnostics(emb.embeddings, codes)
    logger.info("quantizer diagnostics:\n%s", diagnostics)

    table = CodeTable.from_codes(
        emb.item_ids, codes.cpu().numpy(), codebook_sizes=quantizer.codebook_sizes,
        always_append=always_append_collision_level,
        collision_order=None if item_counts is None else [-float(item_counts.get(i, 0)) for i in emb.item_ids],
    )
    tokenizer = SemanticIDTokenizer.from_code_table(table)

    output_dir.mkdir(parents=True, exist_ok=True)
    quantizer_dir = output_dir / "quantizer"
    tokenizer_dir = output_dir / "tokenizer"
    quantizer.save_pretrained(quantizer_dir)
    tokenizer.save_pretrained(tokenizer_dir)
    result = QuantizeResult(
        output_dir=output_dir,
        tokenizer_dir=tokenizer_dir,
        quantizer_dir=quantizer_dir,
        num_items=len(table),
        num_levels=table.num_levels,
        codebook_sizes=list(table.codebook_sizes),
        collision_rate=float(table.collision_rate),
        max_collision_group=int(table.max_collision_group),
        fit_seconds=round(fit_seconds, 3),
        diagnostics=diagnostics.to_dict(),
    )
    report = {
        **result.summary(),
        "embeddings": str(embeddings),
        "embeddings_metadata": dict(emb.metadata),  # the embeddings file's header as is (its paths: relative to it)
        "method": method,
        **({"quantizer_config": dict(quantizer_config)} if quantizer_config else {}),
        **({"resolve_collisions": resolve_collisions} if resolve_collisions != "none" else {}),
        **({"collision_order": "training count"} if item_counts is not None else {}),
        "seed": seed,
        "code_table_hash": table.content_hash,
    }
    # paths relative to output_dir where they lie in its output folder (a moved folder stays true)
    report = recorded_paths(report, output_dir, ("output_dir", "tokenizer_dir", "quantizer_dir", "embeddings"))
    write_text_atomic(output_dir / "quantize.json", json.dumps(report, indent=2, default=str) + "\n")
    return result
