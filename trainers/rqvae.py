"""Accelerate training loop for the RQ-VAE quantizer (TIGER's semantic IDs).

The maths lives in ``genrec.tokenization.quantizers.RQVAEQuantizer.training_step`` (its ``forward``); this
module only adds what Accelerate brings — device placement, mixed precision, multi-process data parallelism
— plus a per-epoch loss log. ``RQVAEQuantizer.fit`` is the dependency-free equivalent (plain torch loop).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, broadcast
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from genrec.tokenization.quantizers import RQVAEQuantizer, as_float_embeddings
from genrec.trainers.accelerate_utils import make_train_dataloader, resolve_mixed_precision

logger = logging.getLogger(__name__)

TRAINING_LOG_NAME = "rqvae_training_log.json"


def train_rqvae(
    quantizer: RQVAEQuantizer,
    embeddings: torch.Tensor | np.ndarray,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    mixed_precision: str = "no",
    output_dir: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    show_progress: bool = True,
    accelerator: Accelerator | None = None,
) -> RQVAEQuantizer:
    """Train ``quantizer`` on ``embeddings`` (N, D) with Accelerate; returns the trained quantizer.

    ``epochs`` / ``batch_size`` / ``lr`` default to the quantizer's own settings (``fit_info`` records the
    values used). ``mixed_precision`` is Accelerate's ("no", "fp16", "bf16"; fp16 falls back to "no"
    without a GPU); the quantization itself stays float32. The batch order of epoch ``e`` is a function of
    ``(seed, e)`` only (seed default: the quantizer's), so a run is reproducible. Training continues from
    the quantizer's current weights (a fresh quantizer starts from its seeded initialisation).
    With ``output_dir``, the main process saves the quantizer there (``save_pretrained``) together with
    ``rqvae_training_log.json`` (per-epoch mean losses). In multi-process runs the codebooks are broadcast
    from process 0 after every step, because k-means initialisation and dead-code restarts use each
    process's own batch.
    """
    x = as_float_embeddings(embeddings)
    quantizer.build(x.shape[1])
    epochs = quantizer.epochs if epochs is None else int(epochs)
    batch_size = quantizer.batch_size if batch_size is None else int(batch_size)
    lr = quantizer.lr if lr is None else float(lr)
    seed = quantizer.seed if seed is None else int(seed)
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0 (got {epochs}, {batch_size}, {lr})")
    start = time.perf_counter()
    accelerator = accelerator or Accelerator(
        mixed_precision=resolve_mixed_precision(mixed_precision),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
    )
    loader = make_train_dataloader(TensorDataset(x), batch_size=batch_size, seed=seed)
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=lr)
    model, optimizer, loader = accelerator.prepare(quantizer, optimizer, loader)
    model.train()
    unwrapped: RQVAEQuantizer = accelerator.unwrap_model(model)
    history: list[dict[str, float]] = []
    bar = tqdm(
        total=epochs * len(loader),
        desc="RQ-VAE (accelerate)",
        disable=None if show_progress and accelerator.is_local_main_process else True,
    )
    for epoch in range(epochs):
        totals: dict[str, float] = {}
        steps = 0
        loader.set_epoch(epoch)
        for batch in loader:
            out = model(batch)
            accelerator.backward(out["loss"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if accelerator.num_processes > 1:
                with torch.no_grad():
                    for cb in unwrapped.codebooks:
                        cb.copy_(broadcast(cb.detach().clone(), from_process=0))
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach())
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(out['loss'].detach()):.4g}")
        row = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in totals.items()}}
        history.append(row)
        logger.info("RQ-VAE epoch %d/%d: %s", epoch + 1, epochs, row)
        if not all(math.isfinite(v) for v in row.values()):
            raise FloatingPointError(f"RQ-VAE training diverged at epoch {epoch + 1}: {row}; lower lr")
    bar.close()
    unwrapped.eval()
    unwrapped.codes_ = unwrapped.encode(x)
    unwrapped.fit_info = {
        "num_items": int(x.shape[0]),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "mixed_precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "history": history,
        "fit_seconds": round(time.perf_counter() - start, 3),
        "trainer": "genrec.trainers.rqvae.train_rqvae",
    }
    if output_dir is not None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            out_dir = Path(output_dir)
            unwrapped.save_pretrained(out_dir)
            log: dict[str, Any] = {
                "history": history,
                **{k: v for k, v in unwrapped.fit_info.items() if k != "history"},
            }
            (out_dir / TRAINING_LOG_NAME).write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    return unwrapped


__all__ = ["train_rqvae"]
