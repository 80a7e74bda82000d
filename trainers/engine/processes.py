"""Work split across processes: every rank takes every ``world``-th batch, the results come back to every rank
in the one-process order.

Evaluation (Stage II validation and test, ``genrec evaluate``, the TTDS evaluation, the transition prior's weight
search) and item embedding run on every process of an ``accelerate launch`` / ``torchrun`` job. Each process
computes the batches whose index is its rank modulo the number of processes, and the batches are gathered back in
order (``accelerate.utils.gather_object``), so the result is *identical* to a one-process run: every batch holds
the same rows as in one process (same padding, same arithmetic), only which process computes it changes. In a
one-process run nothing is gathered and nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "end_processes", "is_main_process", "map_batches", "num_processes", "on_main_process", "process_device",
    "process_index", "wait_for_everyone",
]


def _state() -> Any:
    """Accelerate's process state (a process group under ``accelerate launch`` / ``torchrun``, else one process);
    on a machine without CUDA a multi-process launch is CPU data parallelism (gloo), as the trainers set it up."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def num_processes() -> int:
    state = _state()
    return 1 if state is None else int(state.num_processes)


def process_index() -> int:
    state = _state()
    return 0 if state is None else int(state.process_index)


def process_device() -> Any:
    """The device this process computes on: its GPU under a multi-process launch, the (first) GPU of a
    one-process run when there is one, else the CPU."""
    import torch

    state = _state()
    if state is not None:
        return state.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_main_process() -> bool:
    return process_index() == 0


def wait_for_everyone() -> None:
    """A barrier across the processes of the launch (nothing in a one-process run)."""
    state = _state()
    if state is not None and state.num_processes > 1:
        state.wait_for_everyone()


def end_processes(*, completed: bool = True) -> None:
    """Close the launch's process group before the interpreter exits (nothing when there is none).

    A process that exits with a live gloo group can abort in its own teardown ("terminate called without an
    active exception", SIGABRT: pytorch/pytorch#190489) after its work is done, and the launcher then reports
    the whole job failed. After a completed command every process first waits for the others (so none tears the
    group down under a peer still in a collective); after a failure it closes without waiting, since the
    others may never arrive.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if completed and dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()


def on_main_process(function: Callable[[], R]) -> R:
    """Run ``function`` on the main process only (a stage that writes shared files: prepare, quantize, export)
    and hand its result to every process; the others wait. An exception on the main process is raised on every
    process (same type where it can be rebuilt from its message, else ``RuntimeError``), so a multi-process job
    stops everywhere with the same one-line error instead of hanging at the next barrier."""
    state = _state()
    if state is None or state.num_processes == 1:
        return function()
    from accelerate.utils import broadcast_object_list

    outcome: list[Any] = [None]
    if state.is_main_process:
        try:
            outcome[0] = ("ok", function())
        except Exception as error:  # noqa: BLE001 - handed to every process, then raised on each
            outcome[0] = ("error", type(error), str(error))
            broadcast_object_list(outcome, from_process=0)
            raise
    broadcast_object_list(outcome, from_process=0)
    if outcome[0][0] == "ok":
        return outcome[0][1]
    _, kind, message = outcome[0]
    try:
        error = kind(message)
    except Exception:  # noqa: BLE001 - a type that cannot be rebuilt from its message
        error = RuntimeError(f"{kind.__name__} on the main process: {message}")
    raise error


def map_batches(
    function: Callable[[Sequence[T]], Sequence[R]],
    items: Sequence[T],
    batch_size: int,
    *,
    desc: str | None = None,
    unit: str = "batch",
    show_progress: bool = True,
) -> list[R]:
    """``function`` over consecutive batches of ``batch_size`` items, split across processes; the results of
    every batch, concatenated in item order, on every process. ``function`` returns one result per item."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = list(range(0, len(items), batch_size))
    state = _state()
    world = 1 if state is None else int(state.num_processes)
    rank = 0 if state is None else int(state.process_index)
    mine = starts[rank::world]
    bar = tqdm(mine, desc=desc, unit=unit, disable=(rank != 0) or (None if show_progress else True))
    done: list[tuple[int, list[R]]] = []
    for start in bar:
        batch = items[start : start + batch_size]
        results = list(function(batch))
        if len(results) != len(batch):
            raise RuntimeError(f"{function!r} returned {len(results)} results for a batch of {len(batch)} items")
        done.append((start, results))
    if world > 1:
        from accelerate.utils import gather_object

        done = gather_object(done)  # every rank's (start, results) pairs, on every rank
    out: list[R] = []
    for _, results in sorted(done, key=lambda pair: pair[0]):
        out.extend(results)
    return out
