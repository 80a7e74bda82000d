"""Two CPU processes (gloo, ``torch.distributed.run``): Stage I, Stage II and TTDS train under DDP, finish, and
keep their replicas equal. Guards three things: that a multi-process launch on a machine without CUDA really is
CPU data parallelism (Accelerate's ``cpu=False`` made every process an independent single-process job that
raced the others on the output folder: ``build_accelerator`` now asks for the CPU backend there); that the
process group lives through the whole training (the shared loop used to call ``accelerator.end_training()``,
which destroys it, so TTDS's joint phase — and, on GPUs, every collective after a loop — failed); and TTDS's
unused-parameter setting (its warm-up leaves LoRA without gradients)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("multiprocess_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(which: str, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(WORKER), str(out), which]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return [json.loads((out / f"{which}-rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_stage1_and_stage2_train_under_two_processes(tmp_path: Path) -> None:
    ranks = _launch("unger", tmp_path)
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" and r["num_processes"] == 2 for r in ranks)
    assert all(r["stage1_steps"] == 4 and r["stage2_steps"] == 4 for r in ranks)
    # both ranks chose the same best checkpoints and report the same metrics
    assert ranks[0]["stage1_recall"] == ranks[1]["stage1_recall"]
    assert ranks[0]["stage2_test"] == ranks[1]["stage2_test"] and ranks[0]["stage2_test"]["invalid_rate"] == 0.0
    assert (tmp_path / "stage2" / "best" / "model.safetensors").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_ttds_warmup_and_joint_phase_train_under_two_processes(tmp_path: Path) -> None:
    ranks = _launch("ttds", tmp_path)
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["distributed_type"] == "DistributedType.MULTI_CPU" and r["num_processes"] == 2 for r in ranks)
    # 2 warm-up + 4 joint steps; codes: 1 initial + after the warm-up + at joint step 2 (none at the last step)
    assert all(r["ttds_steps"] == 6 and r["ttds_updates"] == 3 for r in ranks)
    # DDP averaged every trained parameter's gradient (LoRA, token rows, towers): the replicas are equal,
    # and so are the code tables each rank computed
    assert ranks[0]["ttds_digest"] == ranks[1]["ttds_digest"]
    assert ranks[0]["ttds_table"] == ranks[1]["ttds_table"]
    assert sorted(p.name for p in (tmp_path / "ttds" / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
