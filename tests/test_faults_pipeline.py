"""Fault injection on the main job (issue 13, cases 2 and 7): stale stages, killed runs, reproducibility.

Every run uses the tiny profile of ``fault_fixtures`` on synthetic S3-Rec data (seconds per run).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fault_fixtures import TINY, run_tiny, run_tiny_subprocess, tiny_encoder, write_s3rec
from safetensors.torch import load_file

FINGERPRINT_DIR = "fingerprints"  # where a run folder keeps its stages' fingerprints

STAGE_LOGS = {
    "prepare": "reusing the prepared dataset",
    "stage1": "reusing Stage I",
    "quantize": "reusing the semantic IDs",
    "stage2": "reusing Stage II",
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_s3rec(tmp_path_factory.mktemp("s3rec") / "data")


@pytest.fixture(scope="module")
def base_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("base") / "run"
    return out, run_tiny(data, out)


def _copy(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(base, out)
    return out


def _reused(caplog: pytest.LogCaptureFixture) -> set[str]:
    text = caplog.text
    return {stage for stage, line in STAGE_LOGS.items() if line in text}


def _rerun(data: Path, out: Path, caplog: pytest.LogCaptureFixture, **overrides) -> tuple[dict, set[str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        summary = run_tiny(data, out, **overrides)
    return summary, _reused(caplog)


# ---------------------------------------------------------------------------------------- case 2: reuse


def test_same_settings_reuse_every_stage(base_run, data: Path, tmp_path: Path, caplog) -> None:
    out = _copy(base_run[0], tmp_path)
    summary, reused = _rerun(data, out, caplog)
    assert reused == set(STAGE_LOGS)
    assert "recomputing" not in caplog.text
    assert summary["test_metrics"] == base_run[1]["test_metrics"]


def test_embeddings_live_in_the_run_folder_not_the_dataset(base_run) -> None:
    out, summary = base_run
    assert not (out / "data" / "embeddings").exists()  # the dataset folder is pushed as is
    assert summary["stages"]["embed"]["path"] == "embeddings/semantic.safetensors"  # relative to the run folder
    assert (out / summary["stages"]["embed"]["path"]).is_file()
    assert sorted(p.stem for p in (out / FINGERPRINT_DIR).glob("*.json")) == ["prepare", "quantize", "stage1", "stage2"]


@pytest.mark.parametrize(
    ("override", "first_recomputed"),
    [({"num_levels": 3}, "quantize"), ({"codebook_size": 3}, "quantize"), ({"seed": 8}, "stage1")],
    ids=["levels", "codebook-size", "seed"],
)
def test_changed_quantization_or_seed_recomputes_from_that_stage(
    base_run, data: Path, tmp_path: Path, caplog, override: dict, first_recomputed: str
) -> None:
    out = _copy(base_run[0], tmp_path)
    summary, reused = _rerun(data, out, caplog, **override)
    order = list(STAGE_LOGS)
    assert reused == set(order[: order.index(first_recomputed)])
    assert f"{first_recomputed}: settings changed" in caplog.text
    key, value = next(iter(override.items()))
    if key == "num_levels":
        assert len(summary["stages"]["quantize"]["codebook_sizes"]) >= 3
    if key == "codebook_size":
        assert max(summary["stages"]["quantize"]["codebook_sizes"][:2]) <= 3
    assert summary[key] == value


def test_changed_max_history_recomputes_everything(base_run, data: Path, tmp_path: Path, caplog) -> None:
    out = _copy(base_run[0], tmp_path)
    _, reused = _rerun(data, out, caplog, max_history=2)
    assert reused == set()
    assert "max_history: 20 -> 2" in caplog.text
    assert json.loads((out / "data" / "genrec_dataset.json").read_text())["max_history"] == 2


def test_changed_profile_recomputes_only_what_it_changes(base_run, data: Path, tmp_path: Path, caplog) -> None:
    out = _copy(base_run[0], tmp_path)
    longer = replace(TINY, name="tiny-longer", stage2_max_steps=9)
    summary, reused = _rerun(data, out, caplog, profile=longer)
    assert reused == {"prepare", "stage1", "quantize"}
    assert "stage2_max_steps: 6 -> 9" in caplog.text
    assert summary["stages"]["stage2"]["steps"] == 9


def test_changed_encoder_recomputes_from_stage1(base_run, data: Path, tmp_path: Path, caplog) -> None:
    out = _copy(base_run[0], tmp_path)
    titles = [json.loads(line)["title"] for line in (data / "items.jsonl").read_text().splitlines()]
    encoder = tiny_encoder(tmp_path / "encoder", titles)
    summary, reused = _rerun(data, out, caplog, encoder=str(encoder))
    assert reused == {"prepare"}
    assert summary["stages"]["embed"]["dim"] == 16
    assert "stage1: settings changed" in caplog.text


def test_changed_input_files_recompute_everything(base_run, tmp_path: Path, caplog) -> None:
    """The same dataset path with other contents (files swapped in place) is another dataset."""
    out = _copy(base_run[0], tmp_path)
    other = write_s3rec(tmp_path / "other", seed=1)
    summary, reused = _rerun(other, out, caplog)
    assert reused == set()
    assert "prepare: settings changed" in caplog.text and "inputs" in caplog.text


def test_legacy_run_folder_is_adopted_when_its_records_match(base_run, data: Path, tmp_path: Path, caplog) -> None:
    """A run folder from before fingerprints (embeddings inside data/, no fingerprints/) stays reusable."""
    out = _copy(base_run[0], tmp_path)
    shutil.rmtree(out / FINGERPRINT_DIR)
    legacy = out / "data" / "embeddings" / "all-MiniLM-L6-v2-packaged-0123456789abcdef.safetensors"
    legacy.parent.mkdir()
    (out / "embeddings" / "semantic.safetensors").rename(legacy)
    summary = json.loads((out / "run.json").read_text())
    summary["stages"]["embed"]["path"] = str(legacy)
    (out / "run.json").write_text(json.dumps(summary))
    _, reused = _rerun(data, out, caplog)
    assert reused == set(STAGE_LOGS) and "recomputing" not in caplog.text
    assert not (out / "data" / "embeddings").exists()
    _, reused = _rerun(data, out, caplog, codebook_size=3)  # and it is checked like any other from now on
    assert reused == {"prepare", "stage1"}


def test_legacy_run_folder_without_records_recomputes(base_run, data: Path, tmp_path: Path, caplog) -> None:
    out = _copy(base_run[0], tmp_path)
    shutil.rmtree(out / FINGERPRINT_DIR)
    (out / "run.json").unlink()  # an interrupted legacy run: nothing says how its stages were made
    _, reused = _rerun(data, out, caplog)
    assert reused == set()
    assert "has no fingerprint" in caplog.text


def test_stages_reused_without_their_run_json_have_an_unknown_time(base_run, data: Path, tmp_path: Path, caplog) -> None:
    """A sitting killed after its stages but before ``run.json``: the rerun reuses them and does not know what
    they cost. Their time is ``None`` ("unknown" in the closing report and the card), not the fraction of a
    second the rerun spent finding them, which read as if the stage had been free."""
    from genrec.trainers.jobs.run_report import format_run_report

    out = _copy(base_run[0], tmp_path)
    (out / "run.json").unlink()
    summary, reused = _rerun(data, out, caplog)
    assert reused == set(STAGE_LOGS)
    assert all(summary["stages"][name]["seconds"] is None for name in STAGE_LOGS)
    assert isinstance(summary["total_seconds"], float)  # this sitting's own time
    report = format_run_report(summary, out, dataset="s3rec")
    assert all(any(line.startswith(name) and " unknown " in line for line in report.splitlines()) for name in STAGE_LOGS)
    card = (out / "README.md").read_text()
    assert "| stage2 (s) | unknown |" in card, card
    again, _ = _rerun(data, out, caplog)  # what this sitting wrote is kept by the next one
    assert all(again["stages"][name] == summary["stages"][name] for name in STAGE_LOGS)


# ---------------------------------------------------------------------------- case 7: determinism, SIGKILL

ARTEFACTS = (
    "stage1/best/model.safetensors",
    "stage1/integrated_embeddings.safetensors",
    "semantic_ids/quantizer/quantizer.safetensors",
    "stage2/best/model.safetensors",
    "model.safetensors",
)


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical embeddings, weights, codes and metrics."""
    first, second = json.loads((a / "run.json").read_text()), json.loads((b / "run.json").read_text())
    embeddings = Path(first["stages"]["embed"]["path"])  # relative to the run folder
    assert embeddings == Path(second["stages"]["embed"]["path"]) and not embeddings.is_absolute()
    for name in (embeddings, *ARTEFACTS):
        left, right = load_file(a / name), load_file(b / name)
        assert left.keys() == right.keys(), name
        for key in left:
            assert torch.equal(left[key], right[key]), f"{name}: {key} differs"
    assert (a / "code_table.parquet").read_bytes() == (b / "code_table.parquet").read_bytes()
    assert first["test_metrics"] == second["test_metrics"]
    assert first["validation_metrics"] == second["validation_metrics"]


def _run_ok(data: Path, out: Path, threads: int = 1) -> None:
    result = run_tiny_subprocess(data, out, threads=threads)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_same_seed_runs_are_bit_identical(tmp_path: Path) -> None:
    """Case 7: two processes, two CPU threads each, same seed: every artefact and metric is bit-identical.

    Before the trainers switched to deterministic algorithms, some Stage I weights differed in their last
    bits between such runs (300 users are enough for two threads to share the work).
    """
    data = write_s3rec(tmp_path / "data", n_users=300, n_items=120)
    _run_ok(data, tmp_path / "first", threads=2)
    _run_ok(data, tmp_path / "second", threads=2)
    assert_same_run(tmp_path / "first", tmp_path / "second")


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run in its own process (one thread, as the killed and resumed runs)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    _run_ok(data, out)
    return out


def _kill_then_rerun(data: Path, out: Path, stage: str) -> str:
    killed = run_tiny_subprocess(data, out, kill=stage, threads=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "run.json").exists()
    rerun = run_tiny_subprocess(data, out, threads=1)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return rerun.stderr


def test_sigkill_during_stage1_then_rerun_equals_an_uninterrupted_run(data: Path, reference: Path, tmp_path: Path) -> None:
    log = _kill_then_rerun(data, tmp_path / "run", "stage1")
    assert "resumed from" in log and "stage1/checkpoints/step-00000003" in log
    assert_same_run(reference, tmp_path / "run")


@pytest.mark.slow
def test_sigkill_during_stage2_then_rerun_equals_an_uninterrupted_run(data: Path, reference: Path, tmp_path: Path) -> None:
    log = _kill_then_rerun(data, tmp_path / "run", "stage2")
    assert "reusing Stage I" in log and "stage2/checkpoints/step-00000003" in log
    assert_same_run(reference, tmp_path / "run")


@pytest.mark.slow
def test_sigkill_during_quantization_then_rerun_equals_an_uninterrupted_run(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    log = _kill_then_rerun(data, tmp_path / "run", "quantize")
    assert "reusing Stage I" in log and "reusing the semantic IDs" not in log
    assert_same_run(reference, tmp_path / "run")
