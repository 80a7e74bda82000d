"""The one training loop of genrec: Stage I, Stage II (and every future trainer) run through :func:`run_training_loop`.

It owns what every training does the same way — optimiser steps with gradient accumulation, the loss log
(``train/*`` means every ``logging_steps``), the validation cadence (every ``eval_every`` steps and at the
last step), keeping the best model on a validation metric, early stopping, a wall-clock budget, periodic
checkpoints with exact resume (:mod:`genrec.trainers.engine.checkpoints`), trackers, the progress bar and
per-step callbacks — so a change to any of them is made once. What differs between trainings comes in
as arguments: how a batch becomes a model output (``forward``), how the model is evaluated
(``evaluate``) and how the best model is saved (``save_best``).

Resume contract (what makes a resumed run bit-identical to an uninterrupted one): the data order of epoch
``e`` is a pure function of ``(seed, e)`` (:func:`epoch_batches` calls ``set_epoch(e)`` and skips the
micro-batches already consumed); checkpoints are taken only after an optimiser step, never inside a
gradient-accumulation window, and hold the optimiser, schedule and RNG states; the data loader draws from
its own generator, never the global torch RNG (:func:`genrec.trainers.engine.accelerator.make_train_dataloader`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from accelerate import Accelerator
from tqdm.auto import tqdm

from genrec.trainers.engine.checkpoints import CheckpointManager, TrainingState

logger = logging.getLogger(__name__)

__all__ = [
    "EarlyStopping",
    "RunningLosses",
    "epoch_batches",
    "log_metrics",
    "optimizer_step",
    "run_training_loop",
]


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


def optimizer_step(
    accelerator: Accelerator, model: Any, loss: Any, optimizer: Any, scheduler: Any, max_grad_norm: float | None
) -> None:
    """Backward, optional clipping (on the micro-batch that syncs gradients), optimiser and schedule step."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
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
        if scheduler is not None:
            train_log["lr"] = scheduler.get_last_lr()[0]
        log_metrics(accelerator, state, train_log, step=step, prefix="train/")
        progress.set_postfix(loss=f"{train_log[self.keys[0]]:.4f}")
        self.values = {key: [] for key in self.keys}


def epoch_batches(accelerator: Accelerator, dataloader: Any, state: TrainingState) -> Iterator[Any]:
    """The batches of epoch ``state.epoch`` not consumed yet, in the same order as an uninterrupted run."""
    dataloader.set_epoch(state.epoch)
    if state.batches_in_epoch:
        loader: Iterable[Any] = accelerator.skip_first_batches(dataloader, state.batches_in_epoch)
    else:
        loader = dataloader
    yield from loader


def run_training_loop(
    *,
    accelerator: Accelerator,
    model: Any,
    optimizer: Any,
    scheduler: Any | None,
    dataloader: Any,
    state: TrainingState,
    checkpoints: CheckpointManager | None,
    forward: Callable[[Any], Any],
    loss_keys: Sequence[str],
    max_steps: int,
    eval_every: int,
    checkpoint_every: int,
    logging_steps: int = 50,
    evaluate: Callable[[], Mapping[str, float]] | None = None,
    metric_for_best: str = "recall@10",
    patience: int | None = None,
    save_best: Callable[[], None] | None = None,
    max_grad_norm: float | None = None,
    time_budget_s: float | None = None,
    start_time: float | None = None,
    callbacks: Sequence[Callable[[TrainingState], None]] = (),
    desc: str = "train",
    show_progress: bool = True,
) -> TrainingState:
    """Train ``model`` from ``state`` (fresh or resumed) to ``max_steps``, early stopping or the time budget.

    Args:
        accelerator, model, optimizer, scheduler, dataloader: what ``accelerator.prepare`` returned.
        state: where to start (``CheckpointManager.start_or_resume``); updated in place and returned.
        scheduler: the learning-rate schedule, stepped after every optimiser step (None: constant rate).
        checkpoints: where checkpoints go (every ``checkpoint_every`` steps, at a stop and at the end; None:
            none, for trainings that take seconds).
        forward: one micro-batch -> model output with ``.loss`` and the attributes named in ``loss_keys``
            (the first is logged on the progress bar).
        max_steps: optimiser steps in all.
        eval_every: optimiser steps between validation evaluations; the last step is always evaluated.
        evaluate: validation metrics of the current model (None: no validation; nothing is "best").
        metric_for_best: key of ``evaluate``'s result that selects the best model (higher is better).
        patience: stop after this many evaluations without improvement (None: never).
        save_best: called on the main process when an evaluation is the best so far.
        max_grad_norm: gradient clipping (None: off).
        time_budget_s, start_time: stop after the first optimiser step that ends more than ``time_budget_s``
            seconds after ``start_time`` (``time.perf_counter()``); that step is evaluated, so the best model
            is still chosen on validation. A run stopped by its budget continues when resumed.
        callbacks: called with the state after every optimiser step (after its evaluation and checkpoint);
            may raise to stop the run.
        desc, show_progress: the tqdm bar's label; False silences it (it is silent off a TTY anyway).
    """
    start = time.perf_counter() if start_time is None else start_time
    if state.stop_reason == "time_budget":  # continue where the budget ran out
        state.stopped_early, state.stop_reason = False, ""
    stopper = EarlyStopping(state, patience=patience)
    progress = tqdm(
        total=max_steps, initial=state.global_step, desc=desc, unit="step",
        disable=(not accelerator.is_main_process) or (None if show_progress else True),
    )
    running = RunningLosses(loss_keys)
    done = state.global_step >= max_steps or state.stopped_early
    model.train()
    entered, seconds_before = time.perf_counter(), state.loop_seconds  # loop time of earlier invocations
    while not done:
        for batch in epoch_batches(accelerator, dataloader, state):
            with accelerator.accumulate(model):
                out = forward(batch)
                optimizer_step(accelerator, model, out.loss, optimizer, scheduler, max_grad_norm)
            state.batches_in_epoch += 1
            running.add(out)
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            progress.update(1)
            step = state.global_step
            state.loop_seconds = seconds_before + time.perf_counter() - entered
            if step % logging_steps == 0:
                running.log(accelerator, state, scheduler, progress, step)
            out_of_time = time_budget_s is not None and time.perf_counter() - start > time_budget_s
            if evaluate is not None and (step % eval_every == 0 or step == max_steps or out_of_time):
                metrics = evaluate()
                if metric_for_best not in metrics:
                    raise ValueError(f"metric_for_best={metric_for_best!r} is not among {sorted(metrics)}")
                improved = stopper.update(metrics[metric_for_best], step, metrics)
                state.loop_seconds = seconds_before + time.perf_counter() - entered  # validation counts too
                if improved:
                    state.best_loop_seconds = round(state.loop_seconds, 2)
                log_metrics(accelerator, state, {k: v for k, v in metrics.items() if not k.startswith("hr@")},
                            step=step, prefix="validation/")
                if improved and save_best is not None and accelerator.is_main_process:
                    save_best()
                accelerator.wait_for_everyone()
                if stopper.should_stop:
                    state.stopped_early = True
                    state.stop_reason = "early_stopping"
                model.train()
            if out_of_time and not state.stopped_early:
                state.stopped_early = True
                state.stop_reason = "time_budget"
                logger.warning("%s: time budget of %.0f s spent after step %d", desc, time_budget_s, step)
            if step >= max_steps and not state.stop_reason:
                state.stop_reason = "max_steps"
            if (step >= max_steps or state.stopped_early) and step % logging_steps:
                running.log(accelerator, state, scheduler, progress, step)  # the last steps' losses
            if checkpoints is not None and (step % checkpoint_every == 0 or state.stopped_early or step >= max_steps):
                checkpoints.save(state)
            for callback in callbacks:
                callback(state)
            if step >= max_steps or state.stopped_early:
                done = True
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    progress.close()
    # The trackers' runs end here; the process group does not (``accelerator.end_training()`` would destroy it,
    # and every collective after the loop — a barrier before saving, TTDS's second phase — would then fail
    # under multi-process training).
    for tracker in accelerator.trackers:
        tracker.finish()
    return state
