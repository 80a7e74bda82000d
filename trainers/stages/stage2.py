"""UNGER Stage II trainer: train the generative recommender on semantic-ID codes with Accelerate.

``train_stage2(data, tokenizer, output_dir)`` reads a prepared genrec dataset (``sequences`` config: one
example per row, the LAST element of ``item_ids`` is the target, the ones before it the history) and the
``SemanticIDTokenizer`` of the run's code table, trains
:class:`~genrec.modeling.modeling_unger.UngerForGenerativeRecommendation` (paper §3.4-3.5, Table 4 defaults:
Adam lr 1e-3, weight decay 1e-7 as L2, batch 256, 20k steps, linear warm-up over 2,000 steps from 1e-7 then
constant), evaluates the *validation* split every ``eval_every`` steps with constrained beam search over the
full corpus (metrics logged as ``validation/...``), keeps the best model by validation Recall@10 and, at the
end, evaluates that model on the *test* split (the reported numbers). It writes:

* ``output_dir/best/``: the best model (``save_pretrained``: config + safetensors) and its tokenizer
  (``tokenizer.json`` + code table), loadable with ``AutoModel`` / ``AutoTokenizer`` after ``import genrec``;
* ``output_dir/stage2_result.json``: the numbers of :class:`Stage2Result` (validation and test metrics; its
  paths, like ``test_ranks.json``'s ``model``, relative to ``output_dir``: :mod:`genrec.trainers.engine.files`);
* ``output_dir/test_ranks.json``: each test user's target rank (``genrec evaluate --per-user``'s format), for
  paired comparisons of two runs (``benchmarks/paired_compare.py``);
* ``output_dir/checkpoints/step-*``: resumable checkpoints (the last ``keep_checkpoints``), which make a
  resumed run bit-identical to an uninterrupted one (see ``genrec.trainers.engine.accelerator``);
* ``output_dir/logs/``: TensorBoard logs when tensorboard is installed.

With ``integrated_embeddings`` (Stage I's ``integrated_embeddings.safetensors``) the model is trained with the
intra-modality distillation loss; without them (or with ``config.distillation_weight=0``) it is plain
TIGER-style training. Rows without a history item are skipped and counted; items missing from the code table
are an error naming the split, row, user and item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genrec.data_scripts.embeddings import ItemEmbeddings
from genrec.modeling.configuration_mscgrec import MSCGRecConfig
from genrec.modeling.configuration_unger import UngerConfig, history_item_parts
from genrec.modeling.modeling_mscgrec import MSCGRecForGenerativeRecommendation
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.engine.accelerator import (
    build_accelerator,
    deterministic_training,
    make_train_dataloader,
    tracker_config,
)
from genrec.trainers.engine.checkpoints import CheckpointManager, TrainingState, job_fingerprint
from genrec.trainers.engine.files import recorded_paths, write_text_atomic
from genrec.trainers.engine.loop import run_training_loop
from genrec.trainers.evaluation.evaluator import evaluate_model, write_per_user_ranks
from genrec.trainers.stages.stage2_defaults import (
    PAPER_BATCH_SIZE,
    PAPER_LR,
    PAPER_MAX_STEPS,
    PAPER_WARMUP_STEPS,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RESULT_FILE",
    "TEST_RANKS_FILE",
    "Stage2Data",
    "Stage2Result",
    "build_stage2_optimizer",
    "collate_trimmed",
    "cropped_history_rows",
    "encode_split",
    "load_stage2_tokenizer",
    "resolve_stage2_config",
    "state_digest",
    "train_stage2",
]

RESULT_FILE = "stage2_result.json"
TEST_RANKS_FILE = "test_ranks.json"  # each test user's target rank (benchmarks/paired_compare.py)
EVAL_KS = (1, 5, 10, 20)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage2Data:
    """One encoded split: a ``TensorDataset`` of (input_ids (n, W), attention_mask (n, W), labels (n, D + 1),
    target rows (n,)), left-padded histories of at most ``max_history`` items, plus what was skipped."""

    split: str
    dataset: TensorDataset
    num_skipped_no_history: int = 0
    num_truncated: int = 0

    def fingerprint(self) -> str:
        """sha256 over every encoded tensor (identifies the training data)."""
        digest = hashlib.sha256(self.split.encode("utf-8"))
        for tensor in self.dataset.tensors:
            digest.update(str(tuple(tensor.shape)).encode("utf-8"))
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()


def load_stage2_tokenizer(tokenizer: str | Path | SemanticIDTokenizer) -> SemanticIDTokenizer:
    """The run's tokenizer: a ``SemanticIDTokenizer`` object or a folder written by its ``save_pretrained``."""
    if isinstance(tokenizer, SemanticIDTokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if not path.is_dir():
            raise FileNotFoundError(
                f"no tokenizer folder at {path}: pass the folder written by SemanticIDTokenizer.save_pretrained "
                "(genrec quantize writes it) or the tokenizer object"
            )
        return SemanticIDTokenizer.from_pretrained(str(path))
    raise TypeError(f"tokenizer must be a SemanticIDTokenizer or a folder, got {type(tokenizer).__name__}")


def cropped_history_rows(
    histories: Sequence[Sequence[str]],
    targets: Sequence[str],
    *,
    copies: float,
    max_items: int | None = None,
    seed: int = 0,
) -> tuple[list[list[str]], list[str]]:
    """Extra training rows: a recent suffix of a history with the same target (history cropping).

    The idea it tests: a training row ties its target to the whole history of the user it came from, so a
    transition "A, then B" seen once or twice in training might not be recalled for a test user whose last item
    is A but whose earlier items differ. A copy that keeps only the last 1..``max_items`` items (uniform; never
    the whole history) trains the same target from the recent items alone. Measured on Beauty it does not help
    (a random suffix is level with no cropping, the last item alone costs 5 % NDCG@10; docs/quality.md), which
    is why it is off by default. Each row with at least two history items gets ``floor(copies)`` copies and one more with
    probability ``copies - floor(copies)``; rows with one item would copy themselves and get none.
    Deterministic in ``seed`` (the copies are part of the training data's fingerprint).
    """
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be a positive number of items, got {max_items}")
    rng = np.random.default_rng(seed)
    whole, fraction = int(math.floor(copies)), copies - math.floor(copies)
    extra_histories: list[list[str]] = []
    extra_targets: list[str] = []
    for history, target in zip(histories, targets, strict=True):
        longest = len(history) - 1 if max_items is None else min(len(history) - 1, max_items)
        if longest < 1:
            continue
        count = whole + int(fraction > 0 and rng.random() < fraction)
        for _ in range(count):
            keep = int(rng.integers(1, longest + 1))
            extra_histories.append(list(history[-keep:]))
            extra_targets.append(target)
    return extra_histories, extra_targets


def encode_split(
    rows: Any,
    split: str,
    tokenizer: SemanticIDTokenizer,
    *,
    max_history: int,
    source: str,
    crop_copies: float = 0.0,
    crop_max_items: int | None = None,
    crop_seed: int = 0,
) -> Stage2Data:
    """Encode one split's rows (history -> input_ids/attention_mask, target -> labels + code-table row).

    ``crop_copies`` > 0 appends :func:`cropped_history_rows` (training augmentation; the history is first cut
    to ``max_history`` items, so a copy is always a suffix of what the model would read).
    """
    # [:]: one Arrow conversion, not row-by-row formatting of a datasets Column (see stage1._encode_split)
    sequences = rows["item_ids"][:]
    users = rows["user_id"][:] if "user_id" in rows.column_names else [str(i) for i in range(len(sequences))]
    keep = [r for r, seq in enumerate(sequences) if seq is not None and len(seq) >= 2]
    skipped = len(sequences) - len(keep)
    if skipped:
        logger.warning("%s: skipped %d %s rows that have no history item", source, skipped, split)
    if not keep:
        raise ValueError(f"{source}: split {split!r} has no example with a history; nothing to train on")
    table = tokenizer.code_table
    flat = [item for r in keep for item in sequences[r]]
    known = table.lookup_indices(flat)
    if bool((known < 0).any()):
        position = int(np.flatnonzero(known < 0)[0])
        lengths = np.cumsum([len(sequences[r]) for r in keep])
        row = keep[int(np.searchsorted(lengths, position, side="right"))]
        raise ValueError(
            f"{source}: split {split!r}, row {row} (user {users[row]!r}) has item id {flat[position]!r}, which is "
            f"not in the tokenizer's code table ({int((known < 0).sum())} unknown occurrences); the code table must "
            "be built from this dataset's items (re-run genrec quantize)"
        )
    histories = [sequences[r][:-1] for r in keep]
    targets = [sequences[r][-1] for r in keep]
    truncated = sum(len(h) > max_history for h in histories)
    if crop_copies:
        extra, extra_targets = cropped_history_rows(
            [h[-max_history:] for h in histories], targets, copies=crop_copies, max_items=crop_max_items,
            seed=crop_seed,
        )
        logger.info("%s: %d cropped-history copies added to the %d %s rows", source, len(extra), len(histories), split)
        histories, targets = histories + extra, targets + extra_targets
    encoded = tokenizer.encode_history(histories, max_items=max_history, padding_side="left", return_tensors="pt")
    labels = tokenizer.encode_targets(targets, add_eos=True)
    target_rows = torch.from_numpy(table.lookup_indices(targets).astype(np.int64))
    dataset = TensorDataset(encoded["input_ids"], encoded["attention_mask"], labels, target_rows)
    return Stage2Data(split=split, dataset=dataset, num_skipped_no_history=skipped, num_truncated=truncated)


def collate_trimmed(batch: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Stack examples and drop the history columns that are padding in every row of the batch.

    Histories are left-padded whole items, so the dropped columns are whole items too (both history modes
    stay aligned); a batch of short histories then costs what its longest history costs.
    """
    input_ids, mask, labels, rows = (torch.stack(column) for column in zip(*batch, strict=True))
    used = mask.any(dim=0)
    first = int(used.float().argmax()) if bool(used.any()) else mask.shape[1]
    return input_ids[:, first:], mask[:, first:], labels, rows


# --------------------------------------------------------------------------------------------------
# Config, optimiser
# --------------------------------------------------------------------------------------------------


def resolve_stage2_config(
    config: UngerConfig | None, tokenizer: SemanticIDTokenizer, embeddings: ItemEmbeddings | None
) -> UngerConfig:
    """The run's config: hyper-parameters from ``config``, the code binding from ``tokenizer``, the
    distillation width from ``embeddings`` (0 without them: plain TIGER-style training)."""
    base = config if config is not None else UngerConfig()
    values = base.bind_to_tokenizer(tokenizer).init_values()
    if embeddings is None:
        if base.integrated_dim:
            logger.warning("config.integrated_dim=%d but no integrated embeddings given: no distillation", base.integrated_dim)
        values["integrated_dim"] = 0
        values["integrated_embeddings_hash"] = None
    elif base.distillation_weight <= 0 and "integrated" not in history_item_parts(
        getattr(base, "history_item_embedding", "none")
    ):
        logger.info("distillation_weight=0: the integrated embeddings are not used")
        values["integrated_dim"] = 0
        values["integrated_embeddings_hash"] = None
    else:
        values["integrated_dim"] = embeddings.dim
    return type(base)(**values)


def load_modality_tables(history_modalities: Mapping[str, Any]) -> dict[str, CodeTable]:
    """MSCGRec's history modalities as code tables: ``CodeTable`` objects, or folders holding one
    (``code_table.json`` + ``code_table.parquet``, e.g. a quantize run's ``tokenizer/``)."""
    tables = {}
    for name, value in history_modalities.items():
        tables[str(name)] = value if isinstance(value, CodeTable) else CodeTable.load(value)
    return tables


def as_mscgrec_config(config: UngerConfig | None, tables: Mapping[str, CodeTable]) -> MSCGRecConfig:
    """``config`` as an MSCGRec config reading ``tables`` per history item (an UNGER config's fields, or an
    MSCGRec config without history modalities yet, e.g. ``MSCGRecConfig(mask_probability=0.75)``, filled in)."""
    names = list(tables)
    sizes = [[int(k) for k in table.codebook_sizes] for table in tables.values()]
    if isinstance(config, MSCGRecConfig) and config.history_modalities:
        if config.history_modalities != names or config.history_codebook_sizes != sizes:
            raise ValueError(
                f"the config reads the history modalities {config.history_modalities} (sizes "
                f"{config.history_codebook_sizes}) but the tables given are {names} (sizes {sizes})"
            )
        return config
    values = (config if config is not None else UngerConfig()).init_values()
    for key in ("history_modalities", "history_codebook_sizes", "history_code_hashes"):
        values.pop(key, None)
    return MSCGRecConfig(**values, history_modalities=names, history_codebook_sizes=sizes)


LR_SCHEDULES = ("constant", "cosine", "linear")


def build_stage2_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    warmup_init_lr: float,
    schedule: str = "constant",
    total_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam (``weight_decay`` as L2, as the paper's Adam) and a linear warm-up from ``warmup_init_lr`` to ``lr``
    over ``warmup_steps`` optimiser steps (paper Table 4: 2,000 steps from 1e-7), then ``schedule``:

    * ``"constant"``: ``lr`` until the end (the paper names no decay);
    * ``"cosine"`` / ``"linear"``: decay from ``lr`` to ``min_lr_ratio * lr`` at ``total_steps`` (our option:
      annealing lets the last steps settle instead of ending at the full learning rate; measured in
      docs/stage2.md).

    ``engine.accelerator.build_optimizer_and_scheduler`` warms up from 0 (``transformers.get_scheduler``); the
    paper's non-zero start needs this schedule. The factor is a plain function of the step, so a resumed run
    (scheduler step restored from the checkpoint) follows the same curve.
    """
    if lr <= 0 or warmup_init_lr < 0 or warmup_steps < 0:
        raise ValueError("lr must be > 0, warmup_init_lr >= 0 and warmup_steps >= 0")
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if schedule != "constant" and (total_steps is None or total_steps <= warmup_steps):
        raise ValueError(f"a {schedule!r} schedule needs total_steps > warmup_steps ({warmup_steps}), got {total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    start = min(warmup_init_lr / lr, 1.0)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return start + (1.0 - start) * step / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))  # type: ignore[operator]
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * shape

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage2Result:
    """What a Stage II run produced. ``validation_metrics``: the best model on the validation split (model
    selection); ``test_metrics``: that model on the test split (the numbers to report; empty if not run)."""

    output_dir: str
    best_model_dir: str
    best_step: int
    global_step: int
    epochs: float
    wall_time_s: float
    stopped_early: bool
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float] = field(default_factory=dict)
    distillation: bool = False
    constrained_training: bool = False
    history_mode: str = "flattened"
    resumed_from: str | None = None
    num_train_examples: int = 0
    num_validation_users: int = 0
    num_test_users: int = 0
    num_skipped_no_history: dict[str, int] = field(default_factory=dict)
    eval_beams: int = 20
    test_beams: int = 20
    lr_schedule: str = "constant"
    transfer: dict[str, Any] | None = None
    loop_seconds: float = 0.0
    best_loop_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over a model's state dict (names, shapes, values): identifies the weights a run starts from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fingerprint(config: UngerConfig, train: Stage2Data, hparams: dict[str, Any]) -> str:
    return job_fingerprint([config.config_hash(), train.fingerprint()], hparams)


@deterministic_training
def train_stage2(
    data: str | Path,
    tokenizer_dir_or_obj: str | Path | SemanticIDTokenizer,
    output_dir: str | Path,
    *,
    config: UngerConfig | None = None,
    integrated_embeddings: str | Path | ItemEmbeddings | None = None,
    history_modalities: Mapping[str, Any] | None = None,
    max_steps: int = PAPER_MAX_STEPS,
    epochs: float | None = None,
    batch_size: int = PAPER_BATCH_SIZE,
    lr: float = PAPER_LR,
    warmup_steps: int = PAPER_WARMUP_STEPS,
    warmup_init_lr: float = 1e-7,
    lr_schedule: str = "constant",
    min_lr_ratio: float = 0.0,
    weight_decay: float = 1e-7,
    max_grad_norm: float | None = None,
    seed: int = 2024,
    eval_every: int | None = None,
    eval_beams: int = 20,
    test_beams: int | None = None,
    eval_batch_size: int = 256,
    metric_for_best: str = "recall@10",
    patience: int | None = None,
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    resume: bool = True,
    max_eval_users: int | None = None,
    evaluate_test: bool = True,
    log_with: str | Sequence[str] | None = "auto",
    logging_steps: int = 50,
    callbacks: Sequence[Callable[[TrainingState], None]] = (),
    show_progress: bool = True,
    init_from: Any = None,
    init_revision: str | None = None,
    data_revision: str | None = None,
    crop_copies: float = 0.0,
    crop_max_items: int | None = None,
) -> Stage2Result:
    """Train UNGER Stage II on a prepared dataset; keep the best validation model; report its test metrics.

    Args:
        data: prepared genrec dataset (local folder or Hub id) with ``sequences`` train/validation/test.
        tokenizer_dir_or_obj: the run's ``SemanticIDTokenizer`` (or its ``save_pretrained`` folder); its code
            table must cover every item of the dataset.
        output_dir: run folder (best model + tokenizer, checkpoints, logs, result JSON).
        config: model hyper-parameters (default :class:`UngerConfig`: the paper's Table 4); the code binding
            (vocabulary, levels, offsets, hash) always comes from the tokenizer.
        history_modalities: MSCGRec — the code tables (or their folders) of the other modalities every history
            item is read in, e.g. ``{"text": ...}``; the model is then :class:`MSCGRecForGenerativeRecommendation`
            decoding in the tokenizer's modality (``config`` may be an :class:`MSCGRecConfig` or UNGER's).
        integrated_embeddings: Stage I's integrated item embeddings (``ItemEmbeddings`` file or object)
            covering every code-table item; enables the distillation loss. None: plain TIGER-style training.
        max_steps: optimiser steps (paper: 20,000).
        epochs: when given, train this many passes over the training rows instead (overrides ``max_steps``;
            at least one step), so one setting fits catalogues of any size.
        batch_size: examples per micro-batch (x ``gradient_accumulation_steps`` per optimiser step).
        lr, warmup_steps, warmup_init_lr, weight_decay: Adam with L2 weight decay, linear warm-up from
            ``warmup_init_lr`` (see :func:`build_stage2_optimizer`).
        lr_schedule, min_lr_ratio: after the warm-up, ``"constant"`` (the paper) or a ``"cosine"`` /
            ``"linear"`` decay to ``min_lr_ratio * lr`` at ``max_steps``.
        max_grad_norm: gradient clipping (None: off, as the paper names none).
        seed: seeds initialisation, data order and any sampling (distillation negatives, dropout).
        eval_every: optimiser steps between validation evaluations (default: once per epoch); the last step
            is always evaluated.
        eval_beams: beam width of the validation beam search (>= 20, the largest cut-off).
        test_beams: beam width of the final test evaluation (default: ``eval_beams``; the paper's tables use
            100, which costs ~5x a 20-beam search).
        eval_batch_size: users per evaluation beam search.
        metric_for_best: validation metric that selects the best model (higher is better).
        patience: stop after this many evaluations without improvement (None: never).
        mixed_precision: "no" / "fp16" / "bf16" (falls back to full precision where unsupported).
        gradient_accumulation_steps: micro-batches per optimiser step.
        checkpoint_every: optimiser steps between checkpoints (default: ``eval_every``).
        keep_checkpoints: checkpoints kept.
        resume: continue from the newest checkpoint in ``output_dir/checkpoints`` (refused if it belongs to
            another config / data / hyper-parameters); False deletes existing checkpoints and starts over.
        max_eval_users: validate on the first N validation users only (None: all); test always uses all.
        evaluate_test: evaluate the best model on the test split at the end.
        log_with: Accelerate tracker(s) for ``output_dir/logs`` (``--report-to``): ``"auto"`` = TensorBoard when
            installed, else none; ``"none"``, ``"all"`` or tracker names (see
            :func:`~genrec.trainers.engine.accelerator.resolve_log_with`). Not part of the checkpoints' identity.
        logging_steps: optimiser steps between training-loss log lines.
        callbacks: called with the :class:`TrainingState` after every optimiser step (after its evaluation and
            checkpoint); may raise to stop the run.
        show_progress: tqdm progress bars (silent when not on a TTY).
        init_from: fine-tuning: a trained UNGER model (object, folder or Hub id at ``init_revision``) whose
            transferable weights initialise this model (:func:`genrec.trainers.stages.weight_transfer.transfer_stage2_weights`:
            the transformer and the code-token rows both vocabularies have; the catalogue stays this dataset's).
        data_revision: branch, tag or commit of a Hub ``data``.
        crop_copies, crop_max_items: history cropping (our option, not the paper's; 0 = off): each training
            row with two or more history items gets ``crop_copies`` extra copies (on average) that keep only its
            last 1..``crop_max_items`` items (None: up to all but one), seeded by ``seed``
            (:func:`cropped_history_rows`). An epoch then covers the copies too.
    """
    from genrec.data_scripts.dataset_loading import check_trainable
    from genrec.data_scripts.prepare import load_genrec_dataset

    start_time = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if batch_size < 1 or max_steps < 1 or (epochs is not None and epochs <= 0):
        raise ValueError("batch_size and max_steps must be >= 1 and epochs > 0")
    top_k = max(EVAL_KS)
    test_beams = eval_beams if test_beams is None else test_beams
    for name, beams in (("eval_beams", eval_beams), ("test_beams", test_beams)):
        if beams < top_k:
            raise ValueError(f"{name} must be >= {top_k} (the largest reported cut-off), got {beams}")
    accelerator = build_accelerator(
        output_dir, seed=seed, mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps, log_with=log_with,
    )
    tokenizer = load_stage2_tokenizer(tokenizer_dir_or_obj)
    embeddings = None
    if integrated_embeddings is not None:
        source = (
            integrated_embeddings
            if isinstance(integrated_embeddings, ItemEmbeddings)
            else ItemEmbeddings.load(integrated_embeddings)
        )
        missing = set(tokenizer.code_table.item_ids) - set(source.item_ids)
        if missing:
            raise ValueError(
                f"the integrated embeddings lack {len(missing)} of the code table's {len(tokenizer.code_table)} "
                f"items, e.g. {sorted(missing)[:5]}; pass Stage I's export for this dataset"
            )
        embeddings = source.reorder(tokenizer.code_table.item_ids)
    config = resolve_stage2_config(config, tokenizer, embeddings)
    modality_tables = load_modality_tables(history_modalities) if history_modalities else None
    if modality_tables is not None:
        config = as_mscgrec_config(config, modality_tables)
    if metric_for_best.split("@")[0] not in ("recall", "hr", "ndcg", "mrr"):
        raise ValueError(f"metric_for_best must be one of recall/hr/ndcg/mrr@K, got {metric_for_best!r}")

    source_name = str(data)
    sequences, _ = load_genrec_dataset(data, revision=data_revision)
    for name in ("train", "validation", "test"):
        if name not in sequences:
            raise ValueError(f"{source_name}: the sequences config has no {name!r} split (has {list(sequences)})")
    check_trainable(sequences, source_name)
    train = encode_split(
        sequences["train"], "train", tokenizer, max_history=config.max_history_items, source=source_name,
        crop_copies=crop_copies, crop_max_items=crop_max_items, crop_seed=seed,
    )

    model_class = MSCGRecForGenerativeRecommendation if isinstance(config, MSCGRecConfig) else UngerForGenerativeRecommendation
    model = model_class(config)
    if modality_tables is not None:
        model.set_modality_codes(tokenizer, modality_tables)  # records the tables' hashes in the config
        config = model.config
    if config.num_items:
        model.set_code_table(tokenizer)  # saved with the weights: generate() constrains itself
    if embeddings is not None and config.uses_distillation:
        model.set_integrated_embeddings(embeddings.embeddings)
    if config.constrained_training:
        model.set_prefix_index(tokenizer.code_table.prefix_index(), tokenizer.code_token_offsets)
    if getattr(config, "history_item_embedding", "none") != "none":
        reads_integrated = "integrated" in history_item_parts(config.history_item_embedding)
        if reads_integrated and embeddings is None:
            raise ValueError(
                f"history_item_embedding={config.history_item_embedding!r} needs integrated_embeddings (Stage I's output)"
            )
        model.set_history_items(tokenizer.code_table.codes, embeddings.embeddings if reads_integrated else None)
    distill = config.uses_distillation
    transfer_report: dict[str, Any] | None = None
    if init_from is not None:
        from genrec.trainers.stages.weight_transfer import load_source_model, transfer_stage2_weights

        source_model = init_from if isinstance(init_from, torch.nn.Module) else load_source_model(init_from, init_revision)
        transfer_report = transfer_stage2_weights(
            model, source_model, has_collision_level=tokenizer.code_table.has_collision_level
        )
        transfer_report["source_digest"] = state_digest(source_model)

    train_loader = make_train_dataloader(train.dataset, batch_size=batch_size, seed=seed, collate_fn=collate_trimmed)
    steps_per_epoch = math.ceil(len(train_loader) / gradient_accumulation_steps)
    if epochs is not None:
        max_steps = max(1, math.ceil(epochs * steps_per_epoch))
    eval_every = eval_every or steps_per_epoch
    checkpoint_every = checkpoint_every or eval_every
    optimizer, scheduler = build_stage2_optimizer(
        model, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, warmup_init_lr=warmup_init_lr,
        schedule=lr_schedule, total_steps=max_steps, min_lr_ratio=min_lr_ratio,
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    hparams = {
        "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "warmup_init_lr": warmup_init_lr,
        "weight_decay": weight_decay, "max_grad_norm": max_grad_norm, "max_steps": max_steps, "seed": seed,
        "gradient_accumulation_steps": gradient_accumulation_steps, "eval_every": eval_every,
        "eval_beams": eval_beams, "metric_for_best": metric_for_best, "patience": patience,
        "max_eval_users": max_eval_users, "mixed_precision": accelerator.mixed_precision,
    }
    if lr_schedule != "constant":  # the paper's constant schedule keeps the fingerprints of earlier runs
        hparams.update(lr_schedule=lr_schedule, min_lr_ratio=min_lr_ratio)
    if crop_copies:  # off keeps the fingerprints of earlier runs
        hparams.update(crop_copies=crop_copies, crop_max_items=crop_max_items)
    if transfer_report is not None:  # a fine-tuning run resumes only from checkpoints of the same source weights
        hparams["init_from"] = transfer_report["source_digest"]
    fingerprint = _fingerprint(config, train, hparams)
    checkpoints = CheckpointManager(
        accelerator, output_dir / "checkpoints", keep_last=keep_checkpoints,
        model=model, optimizer=optimizer, scheduler=scheduler,
    )
    state, resumed_from = checkpoints.start_or_resume(
        fingerprint, resume=resume, identity="config, data, tokenizer or hyper-parameters"
    )
    unwrapped: UngerForGenerativeRecommendation = accelerator.unwrap_model(model)
    best_dir = output_dir / "best"

    def forward(batch: Any) -> Any:
        input_ids, attention_mask, labels, target_rows = batch
        return model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels,
            target_item_indices=target_rows if distill else None,
        )

    def evaluate() -> dict[str, float]:
        return evaluate_model(
            unwrapped, tokenizer, sequences, "validation", k_values=EVAL_KS, num_beams=eval_beams,
            batch_size=eval_batch_size, max_users=max_eval_users, show_progress=show_progress,
        )["metrics"]

    def save_best() -> None:
        unwrapped.save_pretrained(best_dir)
        tokenizer.save_pretrained(str(best_dir))

    if accelerator.log_with:
        accelerator.init_trackers("stage2", config=tracker_config({**config.to_dict(), **hparams}))
    state = run_training_loop(
        accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler, dataloader=train_loader,
        state=state, checkpoints=checkpoints, forward=forward, loss_keys=("loss", "loss_rec", "loss_ikd"),
        max_steps=max_steps, eval_every=eval_every, checkpoint_every=checkpoint_every, logging_steps=logging_steps,
        evaluate=evaluate, metric_for_best=metric_for_best, patience=patience, save_best=save_best,
        max_grad_norm=max_grad_norm, callbacks=callbacks, desc="stage2", show_progress=show_progress,
    )

    if not (best_dir / "model.safetensors").is_file():
        raise RuntimeError(f"no best model in {best_dir}: training ended before any validation evaluation.")
    test_metrics: dict[str, float] = {}
    num_test_users = 0
    skipped = {"train": train.num_skipped_no_history}
    if evaluate_test:
        best = model_class.from_pretrained(best_dir).to(accelerator.device)
        test = evaluate_model(
            best, tokenizer, sequences, "test", k_values=EVAL_KS, num_beams=test_beams,
            batch_size=eval_batch_size, show_progress=show_progress, per_user=True,
        )
        test_metrics, num_test_users = test["metrics"], test["num_users"]
        skipped["test"] = test["num_skipped_no_history"]
        if accelerator.is_main_process:  # each user's rank, `genrec evaluate --per-user`'s format (paired_compare.py)
            write_per_user_ranks(output_dir / TEST_RANKS_FILE, model=str(best_dir), **test)
    result = Stage2Result(
        output_dir=str(output_dir),
        best_model_dir=str(best_dir),
        best_step=int(state.best_step or 0),
        global_step=state.global_step,
        epochs=round(state.global_step / steps_per_epoch, 3),
        wall_time_s=round(time.perf_counter() - start_time, 2),
        stopped_early=state.stopped_early,
        validation_metrics=dict(state.best_metrics),
        test_metrics=dict(test_metrics),
        distillation=distill,
        constrained_training=config.constrained_training,
        history_mode=config.history_mode,
        resumed_from=resumed_from,
        num_train_examples=len(train.dataset),
        num_validation_users=int(state.best_metrics.get("num_users", 0)),
        num_test_users=int(num_test_users),
        num_skipped_no_history=skipped,
        eval_beams=eval_beams,
        test_beams=test_beams,
        lr_schedule=lr_schedule,
        transfer=transfer_report,
        loop_seconds=round(state.loop_seconds, 2),
        best_loop_seconds=state.best_loop_seconds,
    )
    if accelerator.is_main_process:
        # the file's paths are relative to output_dir (a moved folder stays true); the returned result's as given
        record = recorded_paths(result.to_dict(), output_dir, ("output_dir", "best_model_dir", "resumed_from"))
        write_text_atomic(output_dir / RESULT_FILE, json.dumps(record, indent=2) + "\n")
    accelerator.wait_for_everyone()  # every rank returns once the result file exists (callers may read it)
    return result
