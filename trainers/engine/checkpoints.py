"""Training checkpoints that resume exactly and hold no pickle: safetensors for tensors, JSON for the rest.

A checkpoint is a folder ``<root>/step-XXXXXXXX`` with

* ``model.safetensors`` — the model's weights (``weights_filter`` may keep only the trained ones, e.g. LoRA);
* ``optimizer.safetensors`` + ``optimizer.json`` — the optimiser's per-parameter tensors, and its param
  groups and scalar state;
* ``scheduler.json`` — the learning-rate schedule's ``state_dict`` (``LambdaLR`` state is plain numbers);
* ``rng_state_<rank>.safetensors`` + ``rng_state_<rank>.json`` — torch (CPU and every CUDA device), numpy
  and Python RNG states of each process, and Accelerate's step counter;
* ``scaler.json`` — the fp16 gradient scaler's state, when there is one;
* ``trainer_state.json`` — the loop's own :class:`TrainingState`.

Why not ``accelerator.save_state``: it writes the optimiser, scheduler and RNG states with ``torch.save``
(``optimizer.bin``, ``random_states_0.pkl``) — pickles, which genrec neither writes nor reads. A checkpoint
of that format (written by genrec before 0.2) is refused with a ``ValueError`` that says how to go on
(start the stage over, or delete the checkpoint folder): no pickle is ever loaded, not even through
``torch.load(weights_only=True)``. Sharded engines (DeepSpeed, FSDP) own their checkpoint format: there the
manager falls back to ``accelerator.save_state``/``load_state`` (that engine's own files, not genrec's
format) and says so once.

A checkpoint is written into ``<name>.tmp`` and renamed when complete, so a run killed while saving
leaves nothing a resume could mistake for a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_PREFIX", "STATE_FILE", "CheckpointManager", "TrainingState", "job_fingerprint"]

STATE_FILE = "trainer_state.json"
CHECKPOINT_PREFIX = "step-"
MODEL_FILE = "model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
SCALER_FILE = "scaler.json"
#: Files of ``accelerator.save_state`` checkpoints (``torch.save`` pickles): their presence without genrec's
#: own files marks a checkpoint of an older genrec, which is refused, never read.
LEGACY_FILES = ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "pytorch_model.bin")


def job_fingerprint(parts: Sequence[str], hparams: Mapping[str, Any]) -> str:
    """The identity of a training job, saved in its checkpoints: sha256 over ``parts`` (hashes of the config,
    the data, ...) and the hyper-parameters as sorted JSON. A resume into a folder whose checkpoints carry
    another fingerprint is refused (:meth:`CheckpointManager.start_or_resume`)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
    digest.update(json.dumps(dict(hparams), sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass
class TrainingState:
    """The loop's own progress, saved as JSON next to every checkpoint.

    ``batches_in_epoch`` counts the micro-batches of epoch ``epoch`` already consumed (the number to skip
    on resume); ``stop_reason`` says why a finished run stopped (``max_steps``, ``early_stopping`` or
    ``time_budget``); ``fingerprint`` identifies the job (config + data) so a resume into a folder of another
    job is refused. ``loop_seconds`` is the wall time spent in the training loop (steps and validation),
    summed over every resume, and ``best_loop_seconds`` its value at the best validation step: "time to the
    best model" of a run that was stopped and resumed, which no single process's clock knows.
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
    loop_seconds: float = 0.0
    best_loop_seconds: float | None = None

    def save(self, path: str | Path) -> None:
        """Write the state as JSON (atomically: temp file + rename)."""
        _write_json(Path(path), asdict(self), indent=2)

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


def _write_json(path: Path, value: Any, *, indent: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=indent, sort_keys=True, allow_nan=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the checkpoint {path.parent} is incomplete.") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete the checkpoint {path.parent}.") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint {path.parent} is incomplete.")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for truncated/corrupt files
        raise ValueError(f"{path} is corrupt or truncated ({error}); delete the checkpoint {path.parent}.") from None


# ---- optimiser: tensors to safetensors, structure and scalars to JSON -------------------------------


def _json_scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, tuple):
        return {"tuple": [_json_scalar(v, where) for v in value]}
    if isinstance(value, list):
        return [_json_scalar(v, where) for v in value]
    raise TypeError(f"cannot store {where} of type {type(value).__name__} in a JSON checkpoint")


def optimizer_to_files(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser ``state_dict`` into named tensors and a JSON-able rest (see :func:`optimizer_from_files`)."""
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        row: dict[str, Any] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                key = f"state.{param_id}.{name}"
                tensors[key] = value.detach().to("cpu").contiguous()
                row[name] = {"tensor": key}
            else:
                row[name] = _json_scalar(value, f"optimizer state {name!r}")
        state[str(param_id)] = row
    groups = [
        {k: (list(v) if k == "params" else _json_scalar(v, f"param group {k!r}")) for k, v in group.items()}
        for group in state_dict["param_groups"]
    ]
    return tensors, {"state": state, "param_groups": groups}


def optimizer_from_files(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The optimiser ``state_dict`` that :func:`optimizer_to_files` split (tuples and int keys restored)."""
    state: dict[int, dict[str, Any]] = {}
    for param_id, row in meta["state"].items():
        entry = {}
        for name, value in row.items():
            if isinstance(value, dict) and "tensor" in value:
                if value["tensor"] not in tensors:
                    raise ValueError(f"optimizer checkpoint lacks the tensor {value['tensor']!r}")
                entry[name] = tensors[value["tensor"]]
            else:
                entry[name] = _from_json_tree(value)
        state[int(param_id)] = entry
    groups = [
        {k: (list(v) if k == "params" else _from_json_tree(v)) for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ---- RNG states ---------------------------------------------------------------------------------------


def rng_state_to_files(accelerator_step: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch / CUDA / numpy / Python RNG states (and Accelerate's step counter)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = value
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {
        "accelerator_step": int(accelerator_step),
        "numpy": {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    return tensors, meta


def restore_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> int:
    """Install the states :func:`rng_state_to_files` captured; returns Accelerate's step counter."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    numpy = meta["numpy"]
    np.random.set_state((numpy["kind"], np.asarray(numpy["keys"], dtype=np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = meta["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    return int(meta.get("accelerator_step", 0))


# ---- the manager --------------------------------------------------------------------------------------


class CheckpointManager:
    """Checkpoints of one training in ``<root>/step-XXXXXXXX`` (format: module docstring); the last
    ``keep_last`` are kept.

    ``model`` / ``optimizer`` / ``scheduler`` are the objects ``accelerator.prepare`` returned.
    ``weights_filter`` keeps part of the model's state dict (then loading is non-strict for the rest, but
    every kept key must be present); ``save_extra(folder)`` / ``load_extra(folder)`` write and read what a
    trainer keeps besides weights and optimiser (e.g. TTDS's code tables).
    """

    def __init__(
        self,
        accelerator: Accelerator,
        root: str | Path,
        *,
        keep_last: int = 2,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        weights_filter: Callable[[str], bool] | None = None,
        save_extra: Callable[[Path], None] | None = None,
        load_extra: Callable[[Path], None] | None = None,
    ) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}.")
        self.accelerator = accelerator
        self.root = Path(root)
        self.keep_last = keep_last
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.weights_filter = weights_filter
        self.save_extra = save_extra
        self.load_extra = load_extra
        self._sharded = accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
        if self._sharded:
            logger.warning(
                "%s: sharded training engine; checkpoints use accelerator.save_state (its own torch format)",
                accelerator.distributed_type,
            )

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

    # ---- save

    def save(self, state: TrainingState) -> Path:
        """Save weights, optimiser, schedule, RNG states and ``state``; prune all but the last ``keep_last``."""
        accelerator = self.accelerator
        final = self.root / f"{CHECKPOINT_PREFIX}{state.global_step:08d}"
        tmp = final.with_name(final.name + ".tmp")
        if accelerator.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        if self._sharded:
            accelerator.save_state(str(tmp), safe_serialization=True)
        else:
            self._save_files(tmp)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if self.save_extra is not None:
                self.save_extra(tmp)
            state.save(tmp / STATE_FILE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in self.checkpoints()[: -self.keep_last]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        logger.info("saved checkpoint %s", final)
        return final

    def _save_files(self, folder: Path) -> None:
        accelerator = self.accelerator
        if self.model is None or self.optimizer is None:
            raise ValueError("CheckpointManager needs the prepared model and optimizer to save a checkpoint")
        weights = accelerator.get_state_dict(self.model)
        if accelerator.is_main_process:
            if self.weights_filter is not None:
                weights = {k: v for k, v in weights.items() if self.weights_filter(k)}
            save_file(_unshared(weights), str(folder / MODEL_FILE))
            tensors, meta = optimizer_to_files(self.optimizer.state_dict())
            save_file(tensors, str(folder / OPTIMIZER_TENSORS))
            _write_json(folder / OPTIMIZER_META, meta)
            if self.scheduler is not None:
                _write_json(folder / SCHEDULER_FILE, _json_scalar_tree(self.scheduler.state_dict()))
            scaler = getattr(accelerator, "scaler", None)
            if scaler is not None:
                _write_json(folder / SCALER_FILE, _json_scalar_tree(scaler.state_dict()))
        rank = accelerator.process_index
        tensors, meta = rng_state_to_files(accelerator.step)
        save_file(tensors, str(folder / f"rng_state_{rank}.safetensors"))
        _write_json(folder / f"rng_state_{rank}.json", meta)

    # ---- load

    def load(self, path: str | Path) -> TrainingState:
        """Restore weights, optimiser, schedule and RNG states from ``path``; returns the loop state."""
        path = Path(path)
        state = TrainingState.load(path / STATE_FILE)
        if self._sharded:
            self.accelerator.load_state(str(path))
        else:
            _refuse_legacy(path)
            self._load_files(path)
        if self.load_extra is not None:
            self.load_extra(path)
        logger.info("resumed from %s (step %d, epoch %d)", path, state.global_step, state.epoch)
        return state

    def _load_weights(self, path: Path) -> None:
        model = self.accelerator.unwrap_model(self.model)
        weights = _read_tensors(path / MODEL_FILE)
        if self.weights_filter is None:
            result = model.load_state_dict(_with_shared(model, weights), strict=True)
            return
        result = model.load_state_dict(weights, strict=False)
        missing = [k for k in result.missing_keys if self.weights_filter(k)]
        if result.unexpected_keys or missing:
            raise ValueError(
                f"checkpoint {path / MODEL_FILE} does not fit the model: unexpected {result.unexpected_keys[:5]}, "
                f"missing trained weights {missing[:5]}"
            )

    def _load_files(self, path: Path) -> None:
        accelerator = self.accelerator
        self._load_weights(path)
        state_dict = optimizer_from_files(_read_tensors(path / OPTIMIZER_TENSORS), _read_json(path / OPTIMIZER_META))
        self.optimizer.load_state_dict(state_dict)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(_from_json_tree(_read_json(path / SCHEDULER_FILE)))
        scaler = getattr(accelerator, "scaler", None)
        if scaler is not None and (path / SCALER_FILE).is_file():
            scaler.load_state_dict(_from_json_tree(_read_json(path / SCALER_FILE)))
        rank = accelerator.process_index
        accelerator.step = restore_rng_state(
            _read_tensors(path / f"rng_state_{rank}.safetensors"), _read_json(path / f"rng_state_{rank}.json")
        )

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
        if not self._sharded:
            _refuse_legacy(latest)  # before the fingerprint: its own message says what to do
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


def _refuse_legacy(path: Path) -> None:
    """``ValueError`` for a checkpoint in ``accelerator.save_state``'s pickle format (genrec before 0.2)."""
    if (path / OPTIMIZER_META).is_file():
        return
    legacy = [name for name in LEGACY_FILES if (path / name).is_file()]
    if legacy:
        raise ValueError(
            f"{path} is a checkpoint of an older genrec ({', '.join(legacy)}: pickle files, which genrec never "
            "loads); start this stage over (CLI: --restart, or --overwrite for `genrec run`; library: "
            f"resume=False) or delete {path.parent} and run again"
        )


def _json_scalar_tree(value: Any) -> Any:
    """A ``state_dict`` of numbers / lists / dicts / None as JSON-able data (tuples and non-finite floats tagged)."""
    if isinstance(value, Mapping):
        return {str(k): _json_scalar_tree(v) for k, v in value.items()}
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise TypeError("a schedule or scaler state holds a tensor of more than one value")
        return _json_scalar(value.item(), "tensor")
    if isinstance(value, list | tuple):
        items = [_json_scalar_tree(v) for v in value]
        return {"tuple": items} if isinstance(value, tuple) else items
    return _json_scalar(value, "state value")


def _from_json_tree(value: Any) -> Any:
    """The inverse of :func:`_json_scalar` / :func:`_json_scalar_tree` (tagged tuples and non-finite floats)."""
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_from_json_tree(v) for v in value["tuple"])
    if isinstance(value, dict) and set(value) == {"float"}:
        return float(value["float"])
    if isinstance(value, dict):
        return {k: _from_json_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_tree(v) for v in value]
    return value


def _unshared(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights safetensors can store: tied tensors (one storage, several names) kept once, under the first name."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    kept: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen[key] = name
        kept[name] = tensor.detach().to("cpu").contiguous()
    return kept


def _with_shared(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fill in the tied names that :func:`_unshared` dropped from the model's own state dict layout."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    if not missing:
        return weights
    by_storage: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in own.items():
        by_storage.setdefault((tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape)), name)
    filled = dict(weights)
    for name in missing:
        tensor = own[name]
        first = by_storage[(tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))]
        if first in weights:
            filled[name] = weights[first]
    return filled
