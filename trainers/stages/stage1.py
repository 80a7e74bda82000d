"""UNGER Stage I trainer: learn integrated item embeddings and export them for the quantizer.

``train_stage1(data, embeddings, output_dir)`` reads a prepared genrec dataset (``sequences`` config:
one example per row, the last item of ``item_ids`` is the target, the ones before it the history; the
item vocabulary is the ``items`` config's order, index 0 = padding) and frozen semantic item embeddings
(an ``ItemEmbeddings`` file), trains :class:`~genrec.modeling.modeling_unger_fusion.UngerFusionModel` with
Accelerate, keeps the model with the best *validation* Recall@10 (full-corpus ranking of the validation
split), and writes:

* ``output_dir/best/``: the best model (``save_pretrained``: config + safetensors, self-contained) and
  ``vocabulary.json`` (item id of each item index 1..N);
* ``output_dir/integrated_embeddings.safetensors``: the best model's integrated item embeddings as an
  ``ItemEmbeddings`` file (item ids in vocabulary order), the quantizer's input;
* ``output_dir/stage1_result.json``: the numbers of :class:`Stage1Result` (its paths, like the embeddings'
  ``data`` metadata, relative to the file's folder: :mod:`genrec.trainers.engine.files`);
* ``output_dir/checkpoints/step-*``: resumable checkpoints (the last ``keep_checkpoints``);
* ``output_dir/logs/``: TensorBoard logs when tensorboard is installed.

Rows without any history item cannot train a sequential model; they are skipped, counted and logged.
Histories longer than the config's ``max_history`` keep their most recent items (counted, logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from genrec.data_scripts.embeddings import ItemEmbeddings
from genrec.modeling.configuration_unger_fusion import UngerFusionConfig
from genrec.modeling.modeling_unger_fusion import UngerFusionModel
from genrec.trainers.engine.accelerator import (
    build_accelerator,
    build_optimizer_and_scheduler,
    deterministic_training,
    make_train_dataloader,
    tracker_config,
)
from genrec.trainers.engine.checkpoints import CheckpointManager, TrainingState, job_fingerprint
from genrec.trainers.engine.files import recorded_path, recorded_paths, write_text_atomic
from genrec.trainers.engine.loop import run_training_loop
from genrec.trainers.evaluation.metrics import metrics_from_ranks

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDINGS_FILE",
    "Stage1Data",
    "Stage1Result",
    "evaluate_ranking",
    "export_integrated_embeddings",
    "load_semantic_embeddings",
    "load_stage1_data",
    "train_stage1",
]

EMBEDDINGS_FILE = "integrated_embeddings.safetensors"
RESULT_FILE = "stage1_result.json"
VOCABULARY_FILE = "vocabulary.json"
EVAL_KS = (1, 5, 10, 20)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage1Data:
    """Encoded examples: item index ``i + 1`` is ``item_ids[i]``; each split is a ``TensorDataset`` of
    (left-padded history ``(n, L)`` int64, attention mask ``(n, L)`` int64, target index ``(n,)`` int64)."""

    item_ids: list[str]
    splits: dict[str, TensorDataset]
    skipped_no_history: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)
    #: the ``items`` config the vocabulary comes from (its texts are checked against the embeddings' items_hash)
    items: Any = field(default=None, repr=False)

    def fingerprint(self) -> str:
        """sha256 over the vocabulary and every encoded example (identifies the training data)."""
        digest = hashlib.sha256(json.dumps(self.item_ids).encode("utf-8"))
        for name in sorted(self.splits):
            digest.update(name.encode("utf-8"))
            for tensor in self.splits[name].tensors:
                digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()


def _encode_split(
    name: str, rows: Any, index: dict[str, int], max_history: int, source: str
) -> tuple[TensorDataset, int, int]:
    # [:] reads a datasets Column in one Arrow conversion; list(column) formats row by row (~50 us a row: minutes
    # at 10^6 items, benchmarks/scale_stages.py)
    sequences = rows["item_ids"][:]
    users = rows["user_id"][:] if "user_id" in rows.column_names else [None] * len(sequences)
    history = np.zeros((len(sequences), max_history), dtype=np.int64)
    labels = np.zeros(len(sequences), dtype=np.int64)
    keep = np.ones(len(sequences), dtype=bool)
    skipped = truncated = 0
    for row, sequence in enumerate(sequences):
        if sequence is None or len(sequence) < 2:
            keep[row] = False
            skipped += 1
            continue
        try:
            encoded = [index[item] for item in sequence]
        except KeyError as error:
            raise ValueError(
                f"{source}: split {name!r}, row {row} (user {users[row]!r}) has item id {error.args[0]!r}, "
                "which is not in the dataset's items config; the sequences and items configs must come from "
                "the same prepare run (re-run genrec prepare)."
            ) from None
        past = encoded[:-1]
        if len(past) > max_history:
            past = past[-max_history:]
            truncated += 1
        history[row, max_history - len(past) :] = past
        labels[row] = encoded[-1]
    history, labels = history[keep], labels[keep]
    mask = (history != 0).astype(np.int64)
    dataset = TensorDataset(torch.from_numpy(history), torch.from_numpy(mask), torch.from_numpy(labels))
    return dataset, skipped, truncated


def load_stage1_data(
    data: str | Path, *, max_history: int = 20, splits: Sequence[str] = ("train", "validation"),
    revision: str | None = None,
) -> Stage1Data:
    """Load and encode a prepared genrec dataset (local folder or Hub id at ``revision``) for Stage I.

    Loaded and validated with ``genrec.data_scripts.prepare.load_genrec_dataset``. The vocabulary is the
    ``items`` config in row order; sequences with an item missing from it are an error (which split, row,
    user and item). Rows with no history are skipped and counted; histories longer than ``max_history``
    keep their most recent items.
    """
    from genrec.data_scripts.prepare import load_genrec_dataset

    source = str(data)
    sequences, items = load_genrec_dataset(data, revision=revision)  # validates configs, splits, columns, unique item ids
    item_ids = [str(i) for i in items["item_id"][:]]
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    out = Stage1Data(item_ids=item_ids, splits={}, items=items)
    for name in splits:
        if name not in sequences:
            raise ValueError(f"{source}: the sequences config has no {name!r} split (has {list(sequences)}).")
        encoded, skipped, truncated = _encode_split(name, sequences[name], index, max_history, source)
        if len(encoded) == 0:
            raise ValueError(f"{source}: split {name!r} has no example with a history; nothing to train on.")
        out.splits[name] = encoded
        out.skipped_no_history[name] = skipped
        out.truncated[name] = truncated
        if skipped:
            logger.warning("%s: skipped %d %s rows that have no history item", source, skipped, name)
        if truncated:
            logger.info("%s: kept the last %d items of %d longer %s histories", source, max_history, truncated, name)
    return out


def load_semantic_embeddings(
    embeddings: str | Path | ItemEmbeddings, item_ids: Sequence[str], *, items: Any = None
) -> ItemEmbeddings:
    """The semantic embeddings re-ordered to the item vocabulary ``item_ids``.

    Refused (``ValueError``, naming the file and the fix) unless they were made for exactly this catalogue:
    the same item ids (none missing, none extra: a file of another dataset whose ids merely overlap is not
    taken), and, when the file records the ``items_hash`` and ``template`` it was made with (every
    ``genrec embed`` file does) and ``items`` (the dataset's ``items`` config) is given, the same item texts.
    """
    from genrec.data_scripts.item_text import hash_item_texts, render_item_texts

    source = embeddings if isinstance(embeddings, ItemEmbeddings) else ItemEmbeddings.load(embeddings)
    name = f"the semantic embeddings {embeddings}" if not isinstance(embeddings, ItemEmbeddings) else "the semantic embeddings"
    fix = "embed this dataset's items config (genrec embed <data>) or pass the file made for it"
    missing = set(item_ids) - set(source.item_ids)
    if missing:
        raise ValueError(
            f"{name} lack {len(missing)} of the dataset's {len(item_ids)} items, e.g. {sorted(missing)[:5]}; {fix}."
        )
    extra = set(source.item_ids) - set(item_ids)
    if extra:
        raise ValueError(
            f"{name} were made for another catalogue: {len(source.item_ids)} items, {len(extra)} of them not in "
            f"this dataset's {len(item_ids)} (e.g. {sorted(extra)[:5]}); {fix}."
        )
    recorded, template = source.metadata.get("items_hash"), source.metadata.get("template")
    if items is not None and recorded and template is not None:
        try:  # the hash is over rows in order: the dataset's (as embedded) or the file's (a reordered file)
            rendered = render_item_texts(items, template)
            texts = dict(zip(item_ids, rendered, strict=True))
            current = hash_item_texts(item_ids, rendered)
            in_file_order = hash_item_texts(source.item_ids, [texts[i] for i in source.item_ids])
        except (ValueError, KeyError, IndexError) as error:
            current = in_file_order = f"unrenderable ({error})"
        if recorded not in (current, in_file_order):
            raise ValueError(
                f"{name} were made for other item texts than this dataset's (items_hash {recorded[:12]}, this "
                f"dataset's {current[:12]}, template {template!r}): the items changed since they were embedded; {fix}."
            )
    return source.reorder(item_ids)


# --------------------------------------------------------------------------------------------------
# Evaluation and export
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_ranking(
    model: UngerFusionModel,
    dataloader: DataLoader,
    accelerator: Any = None,
    *,
    ks: Sequence[int] = EVAL_KS,
) -> dict[str, float]:
    """Full-corpus ranking metrics of the target items (``genrec.trainers.evaluation.metrics.metrics_from_ranks``).

    Each batch's scores against all N items are one dot product with the item table (computed once per
    call). Rank = number of items scoring at least as high as the target (ties count against the target,
    so a model that scores everything equally ranks the target last, not first).
    """
    was_training = model.training
    model.eval()
    table = model.item_table()
    ranks = []
    for history_ids, mask, labels in dataloader:
        scores = model.score_items(history_ids, mask, table)
        target = scores.gather(1, (labels - 1).unsqueeze(1))
        rank = (scores >= target).sum(dim=1)
        ranks.append(accelerator.gather_for_metrics(rank) if accelerator is not None else rank)
    model.train(was_training)
    return metrics_from_ranks(torch.cat(ranks).cpu().numpy(), ks)


@torch.no_grad()
def export_integrated_embeddings(
    model: UngerFusionModel,
    item_ids: Sequence[str],
    path: str | Path,
    *,
    metadata: dict[str, str] | None = None,
) -> ItemEmbeddings:
    """Write the model's integrated item embeddings (vocabulary order) as an ``ItemEmbeddings`` file."""
    config = model.config
    was_training = model.training
    model.eval()
    vectors = model.integrated_item_embeddings().detach().float().cpu().contiguous()
    model.train(was_training)
    meta = {
        "source": "genrec.trainers.stages.stage1",
        "stage": "unger_stage1",
        "mode": config.mode,
        "fusion": config.fusion if config.mode == "unger" else "none",
        "collaborative_encoder": config.collaborative_encoder,
        "stage1_config_hash": config.config_hash(),
        "dim": str(vectors.shape[1]),
        "num_items": str(vectors.shape[0]),
        **(metadata or {}),
    }
    result = ItemEmbeddings(list(item_ids), vectors, meta)
    result.save(path)
    return result


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage1Result:
    """What a Stage I run produced. Metrics are on the *validation* split (the test split is untouched)."""

    output_dir: str
    best_model_dir: str
    embeddings_path: str
    validation_recall_at_10: float
    validation_ndcg_at_10: float
    validation_metrics: dict[str, float]
    best_step: int
    global_step: int
    epochs: float
    wall_time_s: float
    stopped_early: bool
    stop_reason: str = ""
    resumed_from: str | None = None
    num_train_examples: int = 0
    num_validation_examples: int = 0
    loop_seconds: float = 0.0
    best_loop_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _resolve_config(config: UngerFusionConfig | None, num_items: int, semantic_dim: int) -> UngerFusionConfig:
    """The run's config: hyper-parameters from ``config``, ``num_items`` and ``semantic_dim`` from the data."""
    if config is None:
        return UngerFusionConfig(num_items=num_items, semantic_dim=semantic_dim)
    values = config.to_dict()
    for key in ("num_items", "semantic_dim"):
        given = values.get(key)
        wanted = num_items if key == "num_items" else semantic_dim
        if given not in (None, wanted, UngerFusionConfig().to_dict()[key]):
            logger.warning("config.%s=%s does not match the data; using %s", key, given, wanted)
    values.update(num_items=num_items, semantic_dim=semantic_dim)
    for key in ("model_type", "transformers_version", "architectures"):
        values.pop(key, None)
    return UngerFusionConfig(**values)


def _fingerprint(config: UngerFusionConfig, data: Stage1Data, semantic: ItemEmbeddings, hparams: dict[str, Any]) -> str:
    semantic_hash = hashlib.sha256(semantic.embeddings.numpy().tobytes()).hexdigest()
    return job_fingerprint([config.config_hash(), data.fingerprint(), semantic_hash], hparams)


@deterministic_training
def train_stage1(
    data: str | Path,
    embeddings: str | Path | ItemEmbeddings,
    output_dir: str | Path,
    *,
    config: UngerFusionConfig | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int = 256,
    eval_batch_size: int = 512,
    lr: float = 1e-3,
    warmup_steps: int = 200,
    weight_decay: float = 1e-7,
    lr_scheduler: str = "constant_with_warmup",
    max_grad_norm: float | None = None,
    gradient_accumulation_steps: int = 1,
    mixed_precision: str = "no",
    seed: int = 2024,
    eval_every: int | None = None,
    patience: int | None = 5,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool = True,
    log_with: str | Sequence[str] | None = "auto",
    logging_steps: int = 50,
    max_eval_examples: int | None = None,
    time_budget_s: float | None = None,
    callbacks: Sequence[Callable[[TrainingState], None]] = (),
    show_progress: bool = True,
    data_revision: str | None = None,
) -> Stage1Result:
    """Train UNGER Stage I on a prepared dataset and export the integrated item embeddings.

    Args:
        data: prepared genrec dataset (local folder or Hub id) with ``sequences`` (train / validation)
            and ``items`` configs.
        embeddings: frozen semantic item embeddings (an ``ItemEmbeddings`` file or object) covering
            every item of the dataset; re-ordered to the vocabulary.
        output_dir: run folder (best model, embeddings, checkpoints, logs, result JSON).
        config: model hyper-parameters (``num_items`` / ``semantic_dim`` are taken from the data);
            default :class:`UngerFusionConfig` (UNGER mode, DIN, hidden 128).
        epochs: passes over the training split (default 20 when ``max_steps`` is not given).
        max_steps: optimiser steps to train for (overrides ``epochs``).
        batch_size: examples per optimiser step and process (micro-batch x ``gradient_accumulation_steps``
            gives the effective batch).
        eval_batch_size: validation rows scored at once (each against all items).
        lr, warmup_steps, weight_decay, lr_scheduler: Adam with ``weight_decay`` as L2 and a
            ``transformers.get_scheduler`` schedule (default: linear warm-up, then constant).
        max_grad_norm: gradient clipping (None: off).
        gradient_accumulation_steps, mixed_precision: passed to ``accelerate.Accelerator`` (mixed
            precision falls back to full precision where the hardware lacks it).
        seed: seeds model initialisation, data order, dropout and sampling.
        eval_every: optimiser steps between validation evaluations (default: once per epoch).
        patience: stop after this many evaluations without a better validation Recall@10 (None: never).
        checkpoint_every: optimiser steps between checkpoints (default: ``eval_every``).
        keep_checkpoints: how many checkpoints to keep.
        resume: continue from the newest checkpoint in ``output_dir/checkpoints`` (refused if it belongs to
            another config/data); False deletes existing checkpoints and starts over.
        log_with: Accelerate tracker(s) for ``output_dir/logs`` (``--report-to``): ``"auto"`` = TensorBoard when
            installed, else none; ``"none"``, ``"all"`` or tracker names (see
            :func:`~genrec.trainers.engine.accelerator.resolve_log_with`). Not part of the checkpoints' identity.
        logging_steps: optimiser steps between training-loss log lines.
        max_eval_examples: evaluate on a seeded random sample of N validation rows (quick runs); None = all.
        time_budget_s: stop after the first optimiser step that ends past this many seconds of this
            call (the model is evaluated then, so the best model is still chosen on validation). A
            time-limited run is not reproducible step for step; use ``max_steps`` for that. Resuming a
            run stopped by its budget continues training (under the new call's budget).
        callbacks: called with the :class:`TrainingState` after every optimiser step (after any
            evaluation and checkpoint of that step); may raise to stop the run.
        show_progress: tqdm progress bar (silent when not on a TTY).
        data_revision: branch, tag or commit of a Hub ``data``.

    Returns:
        :class:`Stage1Result` with the best validation Recall@10 / NDCG@10 and the exported file.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if batch_size < 1 or eval_batch_size < 1:
        raise ValueError("batch_size and eval_batch_size must be positive.")
    accelerator = build_accelerator(
        output_dir, seed=seed, mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps, log_with=log_with,
    )
    max_history = config.max_history_items if config is not None else UngerFusionConfig().max_history_items
    dataset = load_stage1_data(data, max_history=max_history, revision=data_revision)
    semantic = load_semantic_embeddings(embeddings, dataset.item_ids, items=dataset.items)
    config = _resolve_config(config, len(dataset.item_ids), semantic.dim)
    model = UngerFusionModel(config, semantic_embeddings=semantic.embeddings if config.uses_semantic else None)

    train_set = dataset.splits["train"]
    validation_set = dataset.splits["validation"]
    if max_eval_examples is not None:
        keep = torch.randperm(len(validation_set), generator=torch.Generator().manual_seed(0))[:max_eval_examples]
        keep = keep.sort().values
        validation_set = TensorDataset(*(t[keep] for t in validation_set.tensors))
    train_loader = make_train_dataloader(train_set, batch_size=batch_size, seed=seed)
    eval_loader = DataLoader(validation_set, batch_size=eval_batch_size, shuffle=False)
    steps_per_epoch = math.ceil(len(train_loader) / gradient_accumulation_steps)
    if max_steps is None:
        max_steps = (epochs if epochs is not None else 20) * steps_per_epoch
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}.")
    eval_every = eval_every or steps_per_epoch
    checkpoint_every = checkpoint_every or eval_every

    optimizer, scheduler = build_optimizer_and_scheduler(
        model, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, total_steps=max_steps,
        scheduler=lr_scheduler,
    )
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler
    )
    hparams = {
        "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "weight_decay": weight_decay,
        "lr_scheduler": lr_scheduler, "max_grad_norm": max_grad_norm, "max_steps": max_steps,
        "gradient_accumulation_steps": gradient_accumulation_steps, "seed": seed, "eval_every": eval_every,
        "patience": patience, "max_eval_examples": max_eval_examples, "time_budget_s": time_budget_s,
        "mixed_precision": accelerator.mixed_precision,
    }
    # the time budget is not part of the job's identity: a run stopped by it can be resumed with more time
    fingerprint = _fingerprint(config, dataset, semantic, {k: v for k, v in hparams.items() if k != "time_budget_s"})
    checkpoints = CheckpointManager(
        accelerator, output_dir / "checkpoints", keep_last=keep_checkpoints,
        model=model, optimizer=optimizer, scheduler=scheduler,
    )
    state, resumed_from = checkpoints.start_or_resume(
        fingerprint, resume=resume, identity="config, data or hyper-parameters"
    )
    unwrapped: UngerFusionModel = accelerator.unwrap_model(model)
    best_dir = output_dir / "best"

    def save_best() -> None:
        unwrapped.save_pretrained(best_dir)
        (best_dir / VOCABULARY_FILE).write_text(json.dumps(dataset.item_ids) + "\n")

    if accelerator.log_with:
        accelerator.init_trackers("stage1", config=tracker_config({**config.to_dict(), **hparams}))
    state = run_training_loop(
        accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler, dataloader=train_loader,
        state=state, checkpoints=checkpoints,
        forward=lambda batch: model(history_ids=batch[0], attention_mask=batch[1], labels=batch[2]),
        loss_keys=("loss", "loss_next", "loss_align"), max_steps=max_steps, eval_every=eval_every,
        checkpoint_every=checkpoint_every, logging_steps=logging_steps,
        evaluate=lambda: evaluate_ranking(unwrapped, eval_loader, accelerator), metric_for_best="recall@10",
        patience=patience, save_best=save_best, max_grad_norm=max_grad_norm, time_budget_s=time_budget_s,
        start_time=start, callbacks=callbacks, desc="stage1", show_progress=show_progress,
    )

    if not (best_dir / "model.safetensors").is_file():
        raise RuntimeError(f"no best model in {best_dir}: training ended before any validation evaluation.")
    best = UngerFusionModel.from_pretrained(best_dir)
    embeddings_path = output_dir / EMBEDDINGS_FILE
    best_metrics = state.best_metrics
    if accelerator.is_main_process:
        export_integrated_embeddings(
            best, dataset.item_ids, embeddings_path,
            metadata={
                "best_step": str(state.best_step),
                "validation_recall@10": f"{best_metrics.get('recall@10', float('nan')):.6f}",
                "semantic_encoder": semantic.metadata.get("encoder", "unknown"),
                "semantic_cache_key": semantic.metadata.get("cache_key", "unknown"),
                "data": recorded_path(data, embeddings_path.parent),  # a local folder: relative to this file
            },
        )
    accelerator.wait_for_everyone()
    result = Stage1Result(
        output_dir=str(output_dir),
        best_model_dir=str(best_dir),
        embeddings_path=str(embeddings_path),
        validation_recall_at_10=float(best_metrics.get("recall@10", float("nan"))),
        validation_ndcg_at_10=float(best_metrics.get("ndcg@10", float("nan"))),
        validation_metrics=dict(best_metrics),
        best_step=int(state.best_step or 0),
        global_step=state.global_step,
        epochs=round(state.global_step / steps_per_epoch, 3),
        wall_time_s=round(time.perf_counter() - start, 2),
        stopped_early=state.stopped_early,
        stop_reason=state.stop_reason,
        loop_seconds=round(state.loop_seconds, 2),
        best_loop_seconds=state.best_loop_seconds,
        resumed_from=resumed_from,
        num_train_examples=len(train_set),
        num_validation_examples=len(validation_set),
    )
    if accelerator.is_main_process:
        # the file's paths are relative to output_dir (a moved folder stays true); the returned result's as given
        record = recorded_paths(
            result.to_dict(), output_dir, ("output_dir", "best_model_dir", "embeddings_path", "resumed_from")
        )
        write_text_atomic(output_dir / RESULT_FILE, json.dumps(record, indent=2) + "\n")
    accelerator.wait_for_everyone()  # every rank returns once the result file exists (callers may read it)
    return result
