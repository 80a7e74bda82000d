"""`--report-to`: where the training verbs write their logs (Accelerate's ``log_with``), and what it must not change.

``auto`` (the default) is TensorBoard when it is installed, ``none`` writes no ``logs/`` folder, a tracker that
is not installed stops the job before it trains (Accelerate alone would drop it silently), and no stage
fingerprint holds it: a rerun with another ``--report-to`` reuses every stage. The TensorBoard test needs the
``tracking`` extra (``pip install "genrec[tracking]"``) and is skipped without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fault_fixtures import file_hashes, run_tiny, write_s3rec

from genrec.cli import main
from genrec.trainers.engine.accelerator import TRACKER_PACKAGES, resolve_log_with

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _log_folders(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("logs") if p.is_dir())


def test_report_to_values_follow_accelerate_log_with() -> None:
    for value in ("none", "NONE", "", None, ["none"]):
        assert resolve_log_with(value) is None
    assert resolve_log_with("all") == "all"  # every installed tracker, Accelerate's own "all"
    assert resolve_log_with("auto") == (["tensorboard"] if HAS_TENSORBOARD else None)
    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
        resolve_log_with("tensorbord")
    assert set(TRACKER_PACKAGES) | {"all"} == {str(kind) for kind in __import__("accelerate").utils.LoggerType}


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_that_is_not_installed_is_one_line_before_anything_is_written(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="wandb is not installed; pip install wandb"):
        resolve_log_with("tensorboard,wandb" if HAS_TENSORBOARD else "wandb")
    out = tmp_path / "run"
    assert main(["run", "--dataset", "ml-100k", "--out", str(out), "--quick", "--report-to", "wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrec run: error: --report-to wandb: wandb is not installed; pip install wandb"), err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    stage1 = ["stage1", "--data", str(tmp_path / "data"), "--embeddings", str(tmp_path / "e.safetensors"),
              "--out", str(tmp_path / "s1"), "--report-to", "wandb"]
    assert main(stage1) == 2
    assert "pip install wandb" in capsys.readouterr().err
    assert not (tmp_path / "s1").exists()


def test_report_to_none_writes_no_logs_and_is_in_no_fingerprint(tmp_path: Path) -> None:
    data = write_s3rec(tmp_path / "raw")
    out = tmp_path / "run"
    run_tiny(data, out, report_to="none")
    assert (out / "stage2" / "best").is_dir()
    assert _log_folders(out) == []
    fingerprints, stages = file_hashes(out / "fingerprints"), file_hashes(out / "stage2" / "best")
    # another --report-to changes no result: every stage is reused as it is (a reused stage trains nothing,
    # so it writes no logs either)
    summary = run_tiny(data, out, report_to="all")
    assert file_hashes(out / "fingerprints") == fingerprints
    assert file_hashes(out / "stage2" / "best") == stages
    assert summary["stages"]["stage2"]["steps"] == 6


@pytest.mark.skipif(not HAS_TENSORBOARD, reason='needs tensorboard (pip install "genrec[tracking]")')
def test_report_to_tensorboard_writes_event_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_tiny(write_s3rec(tmp_path / "raw"), out, report_to="tensorboard")
    assert _log_folders(out) == ["stage1/logs", "stage2/logs"]
    for stage in ("stage1", "stage2"):
        events = list((out / stage / "logs").rglob("events.out.tfevents.*"))
        assert events and all(p.stat().st_size > 0 for p in events), stage
