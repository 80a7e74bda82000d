"""Shared Accelerate plumbing for genrec's training loops (UNGER Stage I, Stage II, the TTDS LLM trainer).

Every trainer needs the same things around its own forward/backward: an ``accelerate.Accelerator`` set up
the same way (seeded, reproducible data order, mixed precision where the hardware has it, gradient
accumulation, optional TensorBoard), an optimiser with a warm-up schedule from ``transformers``, periodic
checkpoints that can be resumed *exactly* after an interruption, early stopping on a validation metric,
and logging. They live here so that a fix to any of them reaches all trainers.

Resume contract (what makes a resumed run bit-identical to an uninterrupted one):

* the data order of epoch ``e`` is a pure function of ``(seed, e)``: the accelerator is built with
  ``use_seedable_sampler=True`` and a fixed ``data_seed``, and :func:`epoch_batches` calls
  ``set_epoch(e)`` before iterating, then ``accelerator.skip_first_batches`` drops the batches the
  interrupted run had already consumed;
* a checkpoint is taken only after an optimiser step (never in the middle of a gradient accumulation
  window), with ``accelerator.save_state`` (model weights as safetensors; optimiser, scheduler, grad
  scaler and RNG states in Accelerate's torch format, which Accelerate reads back with
  ``torch.load(weights_only=True)``) plus the loop's own :class:`TrainingState` as JSON;
* the data loader must not draw from the global torch RNG when it starts an epoch: give it its own
  ``generator`` (see :func:`make_train_dataloader`), otherwise the dropout masks after a resume differ.

Checkpoints are written into ``<dir>.tmp`` and renamed when complete, so a run killed while saving leaves
no half-written checkpoint that a resume could pick up.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader, Dataset

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "CheckpointManager",
    "EarlyStopping",
    "TrainingState",
    "build_accelerator",
    "build_optimizer_and_scheduler",
    "epoch_batches",
    "log_metrics",
    "make_train_dataloader",
    "resolve_log_with",
    "resolve_mixed_precision",
    "tracker_config",
]

STATE_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"
MIXED_PRECISIONS = ("no", "fp16", "bf16")


# --------------------------------------------------------------------------------------------------
# Accelerator
# --------------------------------------------------------------------------------------------------


def resolve_mixed_precision(requested: str) -> str:
    """The mixed-precision mode to use: ``requested`` when the hardware supports it, else ``"no"``.

    fp16 needs a CUDA (or other accelerator) device; bf16 needs a GPU with bf16 support or runs on CPU
    through autocast. A downgrade is logged as a warning rather than failing a long job at start-up.
    """
    if requested not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {requested!r}.")
    if requested == "fp16" and not torch.cuda.is_available():
        logger.warning("mixed_precision='fp16' needs a CUDA device; training in full precision instead.")
        return "no"
    if requested == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        logger.warning("this GPU does not support bf16; training in full precision instead.")
        return "no"
    return requested


def resolve_log_with(log_with: str | None) -> str | None:
    """``"auto"`` -> ``"tensorboard"`` when the tensorboard package is installed, else no tracker."""
    if log_with == "auto":
        return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else None
    if log_with in (None, "none", ""):
        return None
    return log_with


def _release_previous_accelerator() -> None:
    """Forget the mixed-precision / accumulation state of an earlier ``Accelerator`` in this process.

    Accelerate keeps that state in process-wide singletons and refuses a second ``Accelerator`` with
    another ``mixed_precision`` ("AcceleratorState has already been initialized"), which would stop a
    pipeline that runs Stage I, then Stage II, in one process. The distributed set-up
    (``PartialState``: process group, device) is kept; DeepSpeed states are left alone.
    """
    from accelerate.state import AcceleratorState, DistributedType, GradientState

    state = AcceleratorState._shared_state
    if state and state.get("distributed_type") != DistributedType.DEEPSPEED:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()


def build_accelerator(
    output_dir: str | Path,
    *,
    seed: int,
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    log_with: str | None = "auto",
    cpu: bool | None = None,
) -> Accelerator:
    """A seeded ``Accelerator`` whose data order depends only on ``(seed, epoch)``.

    Logs (TensorBoard, when installed and ``log_with="auto"``) go to ``output_dir/logs``. ``set_seed`` is
    called before anything is built, so model initialisation is reproducible too. Call it once per
    training run: it releases the settings of a previous run's accelerator in the same process.
    """
    if gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}.")
    output_dir = Path(output_dir)
    tracker = resolve_log_with(log_with)
    _release_previous_accelerator()
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(mixed_precision),
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=tracker,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
        cpu=bool(cpu) if cpu is not None else False,
    )
    set_seed(seed)
    return accelerator


def deterministic_training(function: Callable[P, R]) -> Callable[P, R]:
    """Run a training entry point with PyTorch's deterministic algorithms, restoring the mode afterwards.

    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (what accelerate's
    ``set_seed(deterministic=True)`` switches on, but only warning where an op has no deterministic
    kernel). Without it, two same-seed CPU runs with 2+ threads gave Stage I weights that differed in their
    last bits (accumulating index ops choose their summation order at run time); with it they are
    bit-identical. The previous mode is restored on return, so inference in the caller's process computes
    exactly as in a fresh process (a user who already enabled the strict mode keeps it).
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        if not enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return function(*args, **kwargs)
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)

    return wrapper


def tracker_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of ``values`` (TensorBoard's hparams accept only int/float/str/bool)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
            out[key] = ",".join(str(v) for v in value)
    return out


def make_train_dataloader(
    dataset: Dataset, *, batch_size: int, seed: int, collate_fn: Any = None, num_workers: int = 0
) -> DataLoader:
    """A shuffling DataLoader whose epoch order Accelerate can reproduce (see the module docstring).

    The loader's own ``generator`` keeps the start of every epoch from drawing from the global torch
    RNG; Accelerate replaces its ``RandomSampler`` with a ``SeedableRandomSampler`` seeded per epoch.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=False, collate_fn=collate_fn,
        num_workers=num_workers, generator=generator,
    )


def build_optimizer_and_scheduler(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    total_steps: int,
    scheduler: str = "constant_with_warmup",
    betas: tuple[float, float] = (0.9, 0.999),
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam (with L2 ``weight_decay``, as the UNGER paper's Adam) and a ``transformers`` schedule.

    ``scheduler`` is any ``transformers.get_scheduler`` name; the default warms up linearly over
    ``warmup_steps`` optimiser steps and then stays constant (the papers name a warm-up, no decay).
    Only parameters that require gradients are optimised (frozen buffers never are).
    """
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas)
    lr_scheduler = get_scheduler(
        scheduler, optimizer=optimizer, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, 1)
    )
    return optimizer, lr_scheduler


# --------------------------------------------------------------------------------------------------
# Training state, early stopping, logging
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainingState:
    """The loop's own progress, saved as JSON next to every checkpoint.

    ``batches_in_epoch`` counts the micro-batches of epoch ``epoch`` already consumed (the number to skip
    on resume); ``stop_reason`` says why a finished run stopped (``max_steps``, ``early_stopping`` or
    ``time_budget``); ``fingerprint`` identifies the job (config + data) so a resume into a folder of another
    job is refused.
    """

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    evals_without_improvement: int = 0
    stopped_early: bool = False
    stop_reason: str = ""
    fingerprint: str = ""
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        """Write the state as JSON (atomically: temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> TrainingState:
        """Read a state written by :meth:`save`; a clear error for a missing or corrupt file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no trainer state at {path}: the checkpoint is incomplete.") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); delete the checkpoint folder.") from None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown trainer-state fields {unknown}; written by another genrec?")
        return cls(**data)


class EarlyStopping:
    """Tracks the best value of a validation metric (higher is better) and a patience counter.

    ``patience`` counts evaluations without improvement (``None`` or 0 disables stopping); an improvement
    must exceed ``min_delta``.
    """

    def __init__(self, state: TrainingState, *, patience: int | None, min_delta: float = 0.0) -> None:
        self.state = state
        self.patience = patience
        self.min_delta = min_delta

    def update(self, value: float, step: int, metrics: Mapping[str, float] | None = None) -> bool:
        """Record an evaluation; True when it is the new best (the caller then saves the best model)."""
        state = self.state
        if not math.isfinite(value):
            raise FloatingPointError(f"validation metric is {value} at step {step}: training diverged.")
        if state.best_metric is None or value > state.best_metric + self.min_delta:
            state.best_metric = float(value)
            state.best_step = int(step)
            state.best_metrics = {k: float(v) for k, v in (metrics or {}).items()}
            state.evals_without_improvement = 0
            return True
        state.evals_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` evaluations in a row brought no improvement."""
        return bool(self.patience) and self.state.evals_without_improvement >= int(self.patience)


def log_metrics(
    accelerator: Accelerator, state: TrainingState, metrics: Mapping[str, float], *, step: int, prefix: str = ""
) -> None:
    """Send ``metrics`` to the trackers, the Python logger and ``state.log_history`` (kept in checkpoints)."""
    named = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
    accelerator.log(named, step=step)
    state.log_history.append({"step": int(step), **named})
    if accelerator.is_main_process:
        logger.info("step %d: %s", step, ", ".join(f"{k}={v:.5g}" for k, v in named.items()))


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def optimizer_step(
    accelerator: Accelerator, model: Any, loss: Any, optimizer: Any, scheduler: Any, max_grad_norm: float | None
) -> None:
    """Backward, optional clipping (on the micro-batch that syncs gradients), optimiser and schedule step."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


class RunningLosses:
    """Means of a model output's loss terms between two training-log lines (one per ``logging_steps``)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self.values: dict[str, list[float]] = {key: [] for key in self.keys}

    def add(self, output: Any) -> None:
        """Record this micro-batch's terms (``None`` terms, e.g. a loss that is switched off, are skipped)."""
        for key in self.keys:
            value = getattr(output, key)
            if value is not None:
                self.values[key].append(float(value.detach()))

    def log(self, accelerator: Accelerator, state: TrainingState, scheduler: Any, progress: Any, step: int) -> None:
        """Log the means (+ learning rate) under ``train/``, show the loss on the bar, and start over."""
        if not self.values[self.keys[0]]:
            return
        train_log = {k: sum(v) / len(v) for k, v in self.values.items() if v}
        train_log["lr"] = scheduler.get_last_lr()[0]
        log_metrics(accelerator, state, train_log, step=step, prefix="train/")
        progress.set_postfix(loss=f"{train_log[self.keys[0]]:.4f}")
        self.values = {key: [] for key in self.keys}


class CheckpointManager:
    """``accelerator.save_state`` checkpoints in ``<root>/step-XXXXXXXX``, the last ``keep_last`` kept."""

    def __init__(self, accelerator: Accelerator, root: str | Path, *, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}.")
        self.accelerator = accelerator
        self.root = Path(root)
        self.keep_last = keep_last

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (folders with a trainer state; ``*.tmp`` leftovers ignored)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            name = path.name
            numbered = name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX) :].isdigit()
            if numbered and path.is_dir() and (path / STATE_FILE).is_file():
                found.append(path)
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        found = self.checkpoints()
        return found[-1] if found else None

    def save(self, state: TrainingState) -> Path:
        """Save model/optimiser/scheduler/RNG state and ``state``; prune all but the last ``keep_last``."""
        accelerator = self.accelerator
        final = self.root / f"{CHECKPOINT_PREFIX}{state.global_step:08d}"
        tmp = final.with_name(final.name + ".tmp")
        if accelerator.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state.save(tmp / STATE_FILE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        logger.info("saved checkpoint %s", final)
        return final

    def load(self, path: str | Path) -> TrainingState:
        """Restore everything registered with the accelerator from ``path`` and return the loop state."""
        path = Path(path)
        state = TrainingState.load(path / STATE_FILE)
        self.accelerator.load_state(str(path))
        logger.info("resumed from %s (step %d, epoch %d)", path, state.global_step, state.epoch)
        return state

    def start_or_resume(self, fingerprint: str, *, resume: bool, identity: str) -> tuple[TrainingState, str | None]:
        """The loop state to start from, and the checkpoint it came from (None for a fresh start).

        ``resume=True`` continues from the newest checkpoint, refusing one whose fingerprint differs (another
        ``identity``, e.g. "config, data or hyper-parameters"); ``resume=False`` deletes every checkpoint.
        """
        latest = self.latest() if resume else None
        if latest is None:
            if not resume:
                self.clear()
            return TrainingState(fingerprint=fingerprint), None
        if TrainingState.load(latest / STATE_FILE).fingerprint != fingerprint:
            raise ValueError(
                f"{latest} belongs to a run with another {identity}; resume it with the same arguments, pass "
                "resume=False to start over (deletes its checkpoints), or use another output_dir."
            )
        return self.load(latest), str(latest)

    def clear(self) -> None:
        """Delete every checkpoint (a fresh run into a folder that holds an older run's checkpoints)."""
        if self.accelerator.is_main_process and self.root.exists():
            shutil.rmtree(self.root)
        self.accelerator.wait_for_everyone()


def epoch_batches(accelerator: Accelerator, dataloader: Any, state: TrainingState) -> Iterator[Any]:
    """The batches of epoch ``state.epoch`` not consumed yet, in the same order as an uninterrupted run."""
    dataloader.set_epoch(state.epoch)
    if state.batches_in_epoch:
        loader: Iterable[Any] = accelerator.skip_first_batches(dataloader, state.batches_in_epoch)
    else:
        loader = dataloader
    yield from loader
