"""Accelerate training loop for the RQ-VAE quantizer (TIGER's semantic IDs).

The loop is genrec's one training loop (:func:`genrec.trainers.engine.loop.run_training_loop`). The maths lives in ``genrec.tokenization.quantizers.RQVAEQuantizer.training_step`` (its ``forward``); this
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
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, broadcast
from torch.utils.data import TensorDataset

from genrec.tokenization.quantizers import RQVAEQuantizer, as_float_embeddings
from genrec.trainers.engine.accelerator import make_train_dataloader, resolve_mixed_precision
from genrec.trainers.engine.checkpoints import TrainingState
from genrec.trainers.engine.loop import run_training_loop

logger = logging.getLogger(__name__)

TRAINING_LOG_NAME = "rqvae_training_log.json"
LOSS_KEYS = ("loss", "reconstruction_loss", "codebook_loss", "commitment_loss", "restarted_codes")


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
    unwrapped: RQVAEQuantizer = accelerator.unwrap_model(model)
    steps_per_epoch = len(loader)

    def sync_codebooks(state: TrainingState) -> None:
        # k-means initialisation and dead-code restarts use each process's own batch: process 0's codebooks win
        if accelerator.num_processes > 1:
            with torch.no_grad():
                for cb in unwrapped.codebooks:
                    cb.copy_(broadcast(cb.detach().clone(), from_process=0))

    def check_finite(state: TrainingState) -> None:
        if state.global_step % steps_per_epoch == 0:
            row = state.log_history[-1]
            if not all(math.isfinite(v) for k, v in row.items() if k != "step"):
                raise FloatingPointError(f"RQ-VAE training diverged at epoch {state.global_step // steps_per_epoch}: "
                                         f"{row}; lower lr")

    # one log line per epoch (the loss means of its batches); no validation and no checkpoints: a fit takes
    # seconds to minutes
    state = run_training_loop(
        accelerator=accelerator, model=model, optimizer=optimizer, scheduler=None, dataloader=loader,
        state=TrainingState(), checkpoints=None, forward=lambda batch: SimpleNamespace(**model(batch)),
        loss_keys=LOSS_KEYS, max_steps=epochs * steps_per_epoch, eval_every=steps_per_epoch,
        checkpoint_every=steps_per_epoch, logging_steps=steps_per_epoch, callbacks=(sync_codebooks, check_finite),
        desc="RQ-VAE (accelerate)", show_progress=show_progress and accelerator.is_local_main_process,
    )
    history = [
        {"epoch": row["step"] // steps_per_epoch, **{k.removeprefix("train/"): v for k, v in row.items()
                                                     if k.startswith("train/")}}
        for row in state.log_history
    ]
    for row in history:
        logger.info("RQ-VAE epoch %d/%d: %s", row["epoch"], epochs, row)
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
        "trainer": "genrec.trainers.stages.rqvae.train_rqvae",
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
