"""Training checkpoints: safetensors + JSON only, exact round trip, old accelerate checkpoints refused, clear errors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from genrec.trainers.engine.checkpoints import (
    CheckpointManager,
    TrainingState,
    optimizer_from_files,
    optimizer_to_files,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Tied(torch.nn.Module):
    """Embedding and output layer share one weight (as tied LM heads do); plus a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(7, 4)
        self.hidden = torch.nn.Linear(4, 4)
        self.out = torch.nn.Linear(4, 7, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("codes", torch.arange(7))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.embed(ids))))


def build(seed: int = 0) -> tuple[Accelerator, Tied, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(seed)
    accelerator = Accelerator(cpu=True)
    model = Tied()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.9), weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 3))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return accelerator, model, optimizer, scheduler


def train(model: Tied, optimizer, scheduler, steps: int) -> None:
    for _ in range(steps):
        ids = torch.randint(0, 7, (5,))
        loss = torch.nn.functional.cross_entropy(torch.nn.functional.dropout(model(ids), 0.2), ids)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_checkpoint_holds_no_pickle_and_resumes_exactly(tmp_path: Path) -> None:
    accelerator, model, optimizer, scheduler = build()
    manager = CheckpointManager(accelerator, tmp_path, model=model, optimizer=optimizer, scheduler=scheduler)
    train(model, optimizer, scheduler, 3)
    folder = manager.save(TrainingState(global_step=3))
    assert {p.suffix for p in folder.iterdir()} == {".safetensors", ".json"}
    train(model, optimizer, scheduler, 4)  # the uninterrupted continuation (uses torch RNG: dropout, ids)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_lr = scheduler.get_last_lr()

    accelerator2, model2, optimizer2, scheduler2 = build(seed=1)  # other initial weights and RNG
    again = CheckpointManager(accelerator2, tmp_path, model=model2, optimizer=optimizer2, scheduler=scheduler2)
    state = again.load(again.latest())
    assert state.global_step == 3
    assert model2.out.weight is model2.embed.weight  # the tie survives loading
    train(model2, optimizer2, scheduler2, 4)
    assert all(torch.equal(expected[k], v) for k, v in model2.state_dict().items())
    assert scheduler2.get_last_lr() == expected_lr
    group = optimizer2.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and isinstance(group["betas"], tuple)


def test_rng_states_of_every_library_are_restored(tmp_path: Path) -> None:
    accelerator, model, optimizer, scheduler = build()
    manager = CheckpointManager(accelerator, tmp_path, model=model, optimizer=optimizer, scheduler=scheduler)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    manager.save(TrainingState(global_step=1))
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    manager.load(manager.latest())
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws


def test_optimizer_split_round_trip() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tensors, meta = optimizer_to_files(optimizer.state_dict())
    assert all(key.startswith("state.") for key in tensors) and "betas" in meta["param_groups"][0]
    restored = optimizer_from_files(tensors, meta)
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for pid, entries in original["state"].items():
        assert all(torch.equal(entries[k], restored["state"][pid][k]) for k in entries)
    with pytest.raises(ValueError, match="lacks the tensor"):
        optimizer_from_files({}, meta)


def test_corrupt_or_missing_files_get_clear_errors(tmp_path: Path) -> None:
    accelerator, model, optimizer, scheduler = build()
    manager = CheckpointManager(accelerator, tmp_path, model=model, optimizer=optimizer, scheduler=scheduler)
    folder = manager.save(TrainingState(global_step=2))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match="corrupt or truncated"):
        manager.load(folder)
    folder = manager.save(TrainingState(global_step=3))
    (folder / "optimizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        manager.load(folder)
    folder = manager.save(TrainingState(global_step=4))
    (folder / "scheduler.json").write_text("{half")
    with pytest.raises(ValueError, match="not valid JSON"):
        manager.load(folder)


def test_weights_filter_saves_and_checks_only_the_trained_weights(tmp_path: Path) -> None:
    accelerator, model, optimizer, scheduler = build()
    keep = lambda name: name.startswith("hidden.")  # noqa: E731
    manager = CheckpointManager(accelerator, tmp_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                weights_filter=keep)
    folder = manager.save(TrainingState(global_step=1))
    from safetensors.torch import load_file

    assert sorted(load_file(folder / "model.safetensors")) == ["hidden.bias", "hidden.weight"]
    manager.load(folder)
    stricter = CheckpointManager(accelerator, tmp_path, model=model, optimizer=optimizer, scheduler=scheduler,
                                 weights_filter=lambda name: name.startswith(("hidden.", "embed.")))
    with pytest.raises(ValueError, match="missing trained weights"):
        stricter.load(folder)


def test_accelerate_checkpoints_of_older_versions_are_refused_unread(tmp_path: Path, monkeypatch) -> None:
    """accelerate.save_state's pickles (optimizer.bin, random_states_0.pkl) are never loaded, not even with
    torch.load(weights_only=True): the resume is refused with a message that says how to go on (issue 32.5)."""
    accelerator, model, optimizer, scheduler = build()
    train(model, optimizer, scheduler, 2)
    legacy = tmp_path / "step-00000002"
    accelerator.save_state(str(legacy), safe_serialization=True)  # what genrec wrote before
    TrainingState(global_step=2).save(legacy / "trainer_state.json")
    assert (legacy / "optimizer.bin").is_file()

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called on a checkpoint")

    monkeypatch.setattr(torch, "load", no_pickle)
    accelerator2, model2, optimizer2, scheduler2 = build(seed=3)
    before = {k: v.clone() for k, v in model2.state_dict().items()}
    manager = CheckpointManager(accelerator2, tmp_path, model=model2, optimizer=optimizer2, scheduler=scheduler2)
    with pytest.raises(ValueError, match=r"checkpoint of an older genrec \(optimizer.bin.*pickle files, which genrec "
                                         r"never loads\); start this stage over \(CLI: --restart"):
        manager.load(manager.latest())
    assert all(torch.equal(before[k], v) for k, v in model2.state_dict().items())  # nothing half-restored
