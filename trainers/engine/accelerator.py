"""Shared Accelerate plumbing for genrec's training loops (UNGER Stage I, Stage II, the TTDS LLM trainer).

Every trainer needs the same things around its own forward/backward: an ``accelerate.Accelerator`` set up
the same way (seeded, reproducible data order, mixed precision where the hardware has it, gradient
accumulation, optional TensorBoard), an optimiser with a warm-up schedule from ``transformers``, periodic
checkpoints that can be resumed *exactly* after an interruption, early stopping on a validation metric,
and logging. They live here so that a fix to any of them reaches all trainers.

The loop itself lives in :mod:`genrec.trainers.engine.loop` and its checkpoints in
:mod:`genrec.trainers.engine.checkpoints`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    ProjectConfiguration,
    set_seed,
)
from torch.utils.data import DataLoader, Dataset

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "build_accelerator",
    "deterministic_training",
    "build_optimizer_and_scheduler",
    "make_train_dataloader",
    "resolve_log_with",
    "resolve_mixed_precision",
    "tracker_config",
    "TRACKER_PACKAGES",
]

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


#: The trackers ``--report-to`` / ``log_with`` may name (Accelerate's ``LoggerType`` values but ``all``) -> the
#: package to install for it.
TRACKER_PACKAGES = {
    "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio", "aim": "aim", "comet_ml": "comet_ml",
    "mlflow": "mlflow", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
}


def resolve_log_with(log_with: str | Sequence[str] | None) -> str | list[str] | None:
    """What ``Accelerator(log_with=...)`` gets for a ``--report-to`` value (Accelerate's ``log_with`` semantics).

    * ``"auto"`` (genrec's default): ``["tensorboard"]`` when the tensorboard package is installed, else no tracker;
    * ``None``, ``"none"`` or ``""``: no tracker (no ``logs/`` folder is written);
    * ``"all"``: every tracker installed in this environment (Accelerate's own ``"all"``; none installed: none);
    * a tracker name, a comma-separated list of them or a sequence: those trackers.

    Raises ``ValueError`` for a name Accelerate does not know and for a named tracker whose package is not
    installed (``pip install wandb``): Accelerate would drop such a tracker silently and the run would log
    nowhere. Called before anything trains, so a mistyped tracker costs nothing. Where the logs go does not
    change what is trained, so no fingerprint or checkpoint identity holds it.
    """
    if log_with is None:
        return None
    names = log_with.split(",") if isinstance(log_with, str) else list(log_with)
    names = [str(name).strip().lower() for name in names if str(name).strip()]
    if not names or names == ["none"]:
        return None
    if names == ["auto"]:
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else None
    if names == ["all"]:
        return "all"
    unknown = [name for name in names if name not in TRACKER_PACKAGES]
    if unknown:
        raise ValueError(
            f"--report-to {','.join(names)}: unknown tracker {unknown[0]!r}; give a comma list of "
            f"{', '.join(TRACKER_PACKAGES)}, or all, none or auto"
        )
    from accelerate.tracking import get_available_trackers

    installed = {str(tracker) for tracker in get_available_trackers()}
    missing = [name for name in names if name not in installed]
    if missing:
        packages = " ".join(TRACKER_PACKAGES[name] for name in missing)
        raise ValueError(
            f"--report-to {','.join(names)}: {', '.join(missing)} is not installed; pip install {packages} "
            "(or choose --report-to none)"
        )
    return list(dict.fromkeys(names))


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


def _resolve_cpu(cpu: bool | None) -> bool:
    """``cpu`` for ``Accelerator``: as given; ``None`` means "the GPU when there is one", and, in a multi-process
    launch (``accelerate launch`` / ``torchrun``: ``WORLD_SIZE`` > 1) on a machine without CUDA, ``True`` — without
    it Accelerate runs every process as an independent single-process job (``DistributedType.NO``) instead of
    CPU data parallelism (gloo), and the processes then race on the same output folder."""
    if cpu is not None:
        return bool(cpu)
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def build_accelerator(
    output_dir: str | Path,
    *,
    seed: int,
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    log_with: str | Sequence[str] | None = "auto",
    cpu: bool | None = None,
    ddp_find_unused_parameters: bool = False,
) -> Accelerator:
    """A seeded ``Accelerator`` whose data order depends only on ``(seed, epoch)``.

    Tracker logs (``log_with``, see :func:`resolve_log_with`: ``"auto"`` = TensorBoard when installed, ``"none"``,
    ``"all"`` or tracker names) go to ``output_dir/logs``. ``set_seed`` is
    called before anything is built, so model initialisation is reproducible too. Call it once per
    training run: it releases the settings of a previous run's accelerator in the same process.
    ``ddp_find_unused_parameters``: under DDP, let steps leave trainable parameters without gradients (TTDS's
    warm-up freezes LoRA); it costs a graph traversal per step, so only trainings that need it ask.
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
        # split_batches: a batch size is the global batch, cut into equal parts across the processes, so that
        # a multi-process run draws the batches (and takes the optimiser steps) of the one-process run
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed, split_batches=True),
        cpu=_resolve_cpu(cpu),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)] if ddp_find_unused_parameters
        else None,
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

    ``batch_size`` is the global batch: under a multi-process launch each process takes an equal part of it
    (``split_batches``), so it must be a multiple of the number of processes.

    The loader's own ``generator`` keeps the start of every epoch from drawing from the global torch
    RNG; Accelerate replaces its ``RandomSampler`` with a ``SeedableRandomSampler`` seeded per epoch.
    """
    from genrec.trainers.engine.processes import num_processes

    processes = num_processes()
    if batch_size % processes:
        raise ValueError(
            f"batch size {batch_size} is the global batch, split across {processes} processes: make it a "
            f"multiple of {processes} (e.g. {batch_size + processes - batch_size % processes})"
        )
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

