"""The main job: one dataset through every genrec stage into one run folder.

This module only sequences library calls (prepare -> embed -> quantize -> ...); each stage's logic lives in its own
module. Stages already present in the run folder are reused, so an interrupted run continues where it
stopped instead of starting over.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def infer_source(dataset: str) -> str:
    """Which ``genrec prepare`` source reads ``dataset`` (a name, a folder or a Hub id)."""
    if dataset.lower() in {"ml-100k", "ml100k", "movielens-100k"}:
        return "ml-100k"
    path = Path(dataset)
    if path.is_dir():
        if (path / "sequences.txt").is_file():
            return "s3rec"
        if (path / "ml-100k.inter").is_file():
            return "ml-100k"
        return "hub"
    if path.exists():
        raise ValueError(f"--dataset {dataset}: expected a folder or a dataset name, got a file")
    return "hub"  # a Hub dataset id in genrec's layout


def run_pipeline(
    dataset: str,
    out_dir: str | Path,
    *,
    source: str | None = None,
    encoder: str | None = None,
    max_history: int = 20,
    num_levels: int = 3,
    codebook_size: int = 256,
    seed: int = 2024,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the main job on ``dataset`` into ``out_dir`` and return (and write) its summary."""
    from genrec.data_scripts.embeddings import embed_dataset
    from genrec.data_scripts.prepare import prepare_dataset
    from genrec.trainers.quantize import quantize_embeddings

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = source or infer_source(dataset)
    data_dir = out_dir / "data"
    summary: dict[str, Any] = {"dataset": dataset, "source": source, "stages": {}}

    start = time.perf_counter()
    if overwrite or not (data_dir / "README.md").is_file():
        path = None if source == "ml-100k" and dataset.lower().startswith(("ml", "movielens")) else dataset
        report = prepare_dataset(source, data_dir, path=path, max_history=max_history, overwrite=overwrite)
        logger.info("prepared %s", report)
    else:
        logger.info("reusing the prepared dataset in %s", data_dir)
    summary["stages"]["prepare"] = {"seconds": round(time.perf_counter() - start, 2), "path": str(data_dir)}

    start = time.perf_counter()
    emb_path, emb = embed_dataset(data_dir, encoder=encoder)
    summary["stages"]["embed"] = {
        "seconds": round(time.perf_counter() - start, 2),
        "path": str(emb_path),
        "items": int(emb.embeddings.shape[0]),
        "dim": int(emb.embeddings.shape[1]),
    }

    start = time.perf_counter()
    sid_dir = out_dir / "semantic_ids"
    if overwrite or not (sid_dir / "quantize.json").is_file():
        result = quantize_embeddings(
            emb_path, sid_dir, num_levels=num_levels, codebook_size=codebook_size, seed=seed, overwrite=True
        )
        quantized = result.summary()
    else:
        logger.info("reusing the semantic IDs in %s", sid_dir)
        quantized = json.loads((sid_dir / "quantize.json").read_text())
    summary["stages"]["quantize"] = {
        "seconds": round(time.perf_counter() - start, 2),
        "path": str(sid_dir / "tokenizer"),
        "codebook_sizes": quantized["codebook_sizes"],
        "collision_rate": quantized["collision_rate"],
    }

    (out_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
