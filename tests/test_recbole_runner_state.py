"""benchmarks/recbole_runner.py's resumable state: an epoch saved and restored continues exactly where it stopped.

RecBole itself runs only in its own environment (benchmarks/reporting: runs/recbole-venv); the state helpers are
plain torch + safetensors and are tested here on a small model with Adam, dropout and a shuffling generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def _setup(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Generator]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return model, optimizer, generator


def _epoch(model, optimizer, generator) -> float:
    """One 'epoch': a shuffled order from the loader's generator, dropout from the global generator."""
    data = torch.arange(32, dtype=torch.float32).reshape(8, 4) / 32
    order = torch.randperm(8, generator=generator)
    total = 0.0
    for index in order.split(4):
        loss = model(data[index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


def test_resumed_run_matches_an_uninterrupted_one(benchmark_script, tmp_path: Path) -> None:
    runner = benchmark_script("recbole_runner.py")
    straight = _setup(0)
    straight_losses = [_epoch(*straight) for _ in range(4)]

    first = _setup(0)
    for epoch in range(2):
        _epoch(*first)
        runner.save_training_state(tmp_path, *first, {"epoch": epoch, "cur_step": 0}, best=epoch == 0)
    torch.manual_seed(123)  # a new process: the global generator is elsewhere
    second = _setup(7)  # different initial weights, moments and shuffling: everything must come from the state
    meta = runner.load_training_state(tmp_path, *second)
    assert meta == {"epoch": 1, "cur_step": 0}
    resumed_losses = [_epoch(*second) for _ in range(2)]
    assert resumed_losses == pytest.approx(straight_losses[2:], rel=0, abs=1e-7)
    for a, b in zip(straight[0].parameters(), second[0].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_best_weights_are_the_best_epochs(benchmark_script, tmp_path: Path) -> None:
    runner = benchmark_script("recbole_runner.py")
    model, optimizer, generator = _setup(0)
    _epoch(model, optimizer, generator)
    runner.save_training_state(tmp_path, model, optimizer, generator, {"epoch": 0}, best=True)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    _epoch(model, optimizer, generator)
    runner.save_training_state(tmp_path, model, optimizer, generator, {"epoch": 1}, best=False)
    runner.load_best_weights(tmp_path, model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, best[key], rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))  # every file was renamed into place
    assert not list(tmp_path.glob("*.pth")) and not list(tmp_path.glob("*.pt"))  # no pickle


def test_empty_folder_is_a_fresh_start_and_a_foreign_state_an_error(benchmark_script, tmp_path: Path) -> None:
    runner = benchmark_script("recbole_runner.py")
    model, optimizer, generator = _setup(0)
    assert runner.load_training_state(tmp_path, model, optimizer, generator) is None
    runner.save_training_state(tmp_path, model, optimizer, generator, {"epoch": 0}, best=True)
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text(json.dumps({**state, "version": 99}))
    with pytest.raises(ValueError, match="state version 99.*empty --state-dir"):
        runner.load_training_state(tmp_path, model, optimizer, generator)
    (tmp_path / "state.json").write_text(json.dumps(state))
    other = torch.nn.Linear(3, 3)  # weights of another model: refused, not half-loaded
    with pytest.raises(RuntimeError, match="state_dict"):
        runner.load_training_state(tmp_path, other, torch.optim.Adam(other.parameters()), generator)
