"""Issue 32, case 7: no debris, self-contained run folders.

* ``genrec evaluate --out`` refuses an unusable path before the evaluation and never leaves a ``.tmp`` file;
* the export writes the run folder's root all or nothing: a failure at any point (a full disk while writing,
  a rename that fails) leaves the previous root byte-identical and no staging folder;
* a killed ``prepare`` leaves a staging folder that the next run removes;
* every path a run records is relative: two identical runs in two folders write the same records, and a moved
  run folder reruns, exports and pushes its own model.

Every run uses the tiny profile of ``fault_fixtures`` on synthetic S3-Rec data (seconds per run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fault_fixtures import file_hashes, run_tiny, write_s3rec

from genrec.cli import main
from genrec.trainers.engine.files import recorded_path, resolve_recorded, write_text_atomic
from genrec.trainers.jobs.export_root import EXPORT_RECORD, EXPORT_STAGING

pytestmark = pytest.mark.usefixtures("one_thread")

#: what a run records besides run.json, each a JSON file with paths
RECORDS = ("stage1/stage1_result.json", "semantic_ids/quantize.json", "stage2/stage2_result.json",
           "stage2/test_ranks.json")
#: wall-clock fields: the only ones two identical runs may differ in
TIMINGS = {"seconds", "total_seconds", "loop_seconds", "best_loop_seconds", "wall_time_s", "fit_seconds"}




def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _dead_pid() -> int:
    """The PID of a process that has finished (what a killed run leaves in its temporary names)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_s3rec(tmp_path_factory.mktemp("s3rec") / "data")


@pytest.fixture(scope="module")
def base_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("debris") / "run"
    run_tiny(data, out)
    return out


def _copy(base: Path, tmp_path: Path, name: str = "run") -> Path:
    out = tmp_path / name
    shutil.copytree(base, out)
    return out


# -- evaluate --out: checked before the evaluation, never a .tmp left -----------------------------------------


def test_evaluate_refuses_an_unusable_out_before_evaluating(base_run: Path, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    import genrec.trainers.jobs.load as load

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded: --out was not checked first")

    monkeypatch.setattr(load, "load_recommender", never)
    folder = tmp_path / "reports"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    base = ["evaluate", "--model", str(base_run), "--data", str(base_run / "data"), "--out"]
    assert main([*base, str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*base, str(a_file / "eval.json")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "reports"]  # nothing written, no .tmp
    assert not any(folder.iterdir())


def test_evaluate_writes_its_report_and_nothing_else(base_run: Path, tmp_path: Path) -> None:
    report = tmp_path / "new" / "eval.json"
    assert main(["evaluate", "--model", str(base_run), "--data", str(base_run / "data"), "--max-users", "10",
                 "--per-user", "--out", str(report)]) == 0
    assert json.loads(report.read_text())["num_users"] == 10
    assert [p.name for p in report.parent.iterdir()] == ["eval.json"]


def test_an_atomic_write_that_fails_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "result.json"
    target.write_text("previous")

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with pytest.raises(IsADirectoryError):
        write_text_atomic(tmp_path, "a folder is no file")
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


# -- the export: all or nothing ------------------------------------------------------------------------------


def test_a_full_disk_during_the_export_leaves_the_previous_root_intact(
    base_run: Path, data: Path, tmp_path: Path, monkeypatch
) -> None:
    from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer

    out = _copy(base_run, tmp_path)
    before = file_hashes(out)

    def full_disk(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    # the model's weights and config are already in staging when the tokenizer fails
    monkeypatch.setattr(SemanticIDTokenizer, "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        run_tiny(data, out, seed=7)
    monkeypatch.undo()
    assert file_hashes(out) == before  # byte for byte: weights, config, code, card, run.json
    assert not (out / EXPORT_STAGING).exists()


def test_a_failed_rename_while_installing_puts_the_previous_root_back(
    base_run: Path, data: Path, tmp_path: Path, monkeypatch
) -> None:
    import genrec.trainers.jobs.export_root as export_root

    out = _copy(base_run, tmp_path)
    (out / "model.safetensors").write_bytes(b"a previous export's weights")  # so that the export changes it
    before = file_hashes(out)
    calls = {"n": 0}
    real_replace, real_install = os.replace, export_root._install

    def failing_replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 9:  # half-way through the root's entries (two renames each)
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    def install(staging: Path, out_dir: Path) -> None:  # every new file is written: now the renames fail
        monkeypatch.setattr(os, "replace", failing_replace)
        try:
            real_install(staging, out_dir)
        finally:
            monkeypatch.setattr(os, "replace", real_replace)

    monkeypatch.setattr(export_root, "_install", install)
    with pytest.raises(OSError, match="Input/output error"):
        run_tiny(data, out)
    monkeypatch.undo()
    assert calls["n"] >= 9
    assert file_hashes(out) == before
    assert not (out / EXPORT_STAGING).exists()


def test_the_next_export_cleans_a_stale_staging_and_the_previous_exports_leftovers(
    base_run: Path, data: Path, tmp_path: Path, caplog
) -> None:
    out = _copy(base_run, tmp_path)
    (out / EXPORT_STAGING).mkdir()
    (out / EXPORT_STAGING / "model.safetensors").write_bytes(b"half written by a killed export")
    record = json.loads((out / EXPORT_RECORD).read_text())
    assert "model.safetensors" in record["files"] and "README.md" in record["files"]
    # a file an earlier export wrote and this one does not (the training curve is drawn only with matplotlib,
    # so it cannot stand for that file where matplotlib is installed)
    (out / "exported_by_an_older_version.json").write_text("{}")
    record["files"].append("exported_by_an_older_version.json")
    (out / EXPORT_RECORD).write_text(json.dumps(record))
    (out / "notes.txt").write_text("the user's own file: no export wrote it")
    with caplog.at_level(logging.WARNING):
        run_tiny(data, out)
    assert "an export that did not finish" in caplog.text
    assert not (out / EXPORT_STAGING).exists()
    assert not (out / "exported_by_an_older_version.json").exists()
    assert (out / "notes.txt").read_text().startswith("the user's own file")
    assert file_hashes(out)["model.safetensors"] == file_hashes(base_run)["model.safetensors"]


def test_a_staged_export_is_all_or_nothing_and_repairs_a_killed_one(tmp_path: Path) -> None:
    from genrec.trainers.jobs.export_root import staged_export

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("old config")
    # killed while installing: the old weights set aside in the staging folder, the new ones not yet in
    (out / EXPORT_STAGING / ".previous").mkdir(parents=True)
    (out / EXPORT_STAGING / ".previous" / "model.safetensors").write_bytes(b"old weights")
    with pytest.raises(RuntimeError, match="boom"), staged_export(out) as staging:
        (staging / "config.json").write_text("new config")
        raise RuntimeError("boom")
    assert (out / "model.safetensors").read_bytes() == b"old weights"  # put back by the next export
    assert (out / "config.json").read_text() == "old config" and not (out / EXPORT_STAGING).exists()
    with staged_export(out) as staging:
        (staging / "config.json").write_text("new config")
        (staging / "tables").mkdir()
        (staging / "tables" / "a.json").write_text("{}")
    assert (out / "config.json").read_text() == "new config" and (out / "tables" / "a.json").is_file()
    assert json.loads((out / EXPORT_RECORD).read_text())["files"] == ["config.json", "tables"]
    with staged_export(out) as staging:  # the next export writes no tables: the previous export's are removed
        (staging / "config.json").write_text("newer config")
    assert not (out / "tables").exists() and (out / "model.safetensors").is_file()  # not an export's: kept
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_RECORD, "config.json", "model.safetensors"]


# -- a killed prepare's staging --------------------------------------------------------------------------------


def test_a_killed_prepares_staging_is_removed_by_the_rerun(base_run: Path, data: Path, tmp_path: Path) -> None:
    out = _copy(base_run, tmp_path)
    shutil.rmtree(out / "data")  # the dataset is prepared again...
    stale = out / f".data.tmp-{_dead_pid()}-0123abcd"  # ...where a killed prepare left its staging
    (stale / "sequences").mkdir(parents=True)
    (stale / "sequences" / "train-00000-of-00001.parquet").write_bytes(b"half")
    summary = run_tiny(data, out)
    assert not stale.exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".data.")]
    assert summary["test_metrics"] == json.loads((base_run / "run.json").read_text())["test_metrics"]


def test_prepare_puts_back_the_folder_a_killed_prepare_set_aside(data: Path, tmp_path: Path) -> None:
    from genrec.data_scripts.prepare import prepare_dataset

    out = tmp_path / "prepared"
    prepare_dataset("s3rec", out, path=data)
    before = file_hashes(out)
    pid = _dead_pid()
    # killed between its two renames: the previous folder set aside, the new one still in staging
    aside = tmp_path / f".prepared.old-{pid}-0123abcd"
    aside.mkdir()
    os.replace(out, aside / "prepared")
    staging = tmp_path / f".prepared.tmp-{pid}-4567cdef"
    staging.mkdir()
    with pytest.raises(FileExistsError, match="not empty"):  # put back, then refused without overwrite
        prepare_dataset("s3rec", out, path=data)
    assert file_hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]
    live = tmp_path / f".prepared.tmp-{os.getpid()}-89abcdef"  # a live writer's staging is left alone
    live.mkdir()
    prepare_dataset("s3rec", out, path=data, overwrite=True)
    assert live.is_dir() and file_hashes(out) == before


# -- self-contained run folders ----------------------------------------------------------------------------------


def test_two_identical_runs_in_two_folders_record_the_same_bytes(base_run: Path, data: Path, tmp_path: Path) -> None:
    from genrec.data_scripts.embeddings import ItemEmbeddings

    other = tmp_path / "elsewhere" / "run"
    run_tiny(data, other)
    for name in ("run.json", *RECORDS):
        first, second = (json.loads((run / name).read_text()) for run in (base_run, other))
        assert _without_timings(first) == _without_timings(second), name
        text = (other / name).read_text()
        assert str(other) not in text and str(base_run) not in text, name
    summary = json.loads((other / "run.json").read_text())
    assert {stage: entry["path"] for stage, entry in summary["stages"].items()} == {
        "prepare": "data", "embed": "embeddings/semantic.safetensors", "stage1": "stage1",
        "quantize": "semantic_ids/tokenizer", "stage2": "stage2", "export": ".",
    }
    assert summary["model_dir"] == "."
    stage2 = json.loads((other / "stage2" / "stage2_result.json").read_text())
    assert stage2["best_model_dir"] == "best" and stage2["output_dir"] == "."
    assert json.loads((other / "stage2" / "test_ranks.json").read_text())["model"] == "best"
    quantize = json.loads((other / "semantic_ids" / "quantize.json").read_text())
    assert quantize["embeddings"] == "../stage1/integrated_embeddings.safetensors"
    assert quantize["tokenizer_dir"] == "tokenizer"
    stage1 = json.loads((other / "stage1" / "stage1_result.json").read_text())
    assert stage1["embeddings_path"] == "integrated_embeddings.safetensors"
    headers = [ItemEmbeddings.load(run / "stage1" / "integrated_embeddings.safetensors").metadata
               for run in (base_run, other)]
    assert headers[0] == headers[1] and headers[1]["data"] == "../data"
    assert (base_run / "stage1" / "integrated_embeddings.safetensors").read_bytes() == (
        other / "stage1" / "integrated_embeddings.safetensors").read_bytes()


def test_a_moved_run_folder_reruns_exports_and_pushes_its_own_model(
    base_run: Path, data: Path, tmp_path: Path, caplog
) -> None:
    from genrec.trainers.jobs.push import model_push_operations

    copy = _copy(base_run, tmp_path, "a")
    own = file_hashes(copy)
    moved = tmp_path / "somewhere" / "else"
    moved.parent.mkdir()
    os.replace(copy, moved)
    with caplog.at_level(logging.INFO):
        summary = run_tiny(data, moved)
    for line in ("reusing the prepared dataset", "reusing Stage I", "reusing the semantic IDs", "reusing Stage II"):
        assert line in caplog.text
    after = file_hashes(moved)
    assert after["model.safetensors"] == own["model.safetensors"] == after["stage2/best/model.safetensors"]
    assert summary["model_dir"] == "." and (moved / summary["stages"]["stage2"]["path"] / "best").is_dir()
    operations = {op.path_in_repo: op.path_or_fileobj for op in model_push_operations(moved, "someone/model")}
    assert hashlib.sha256(operations["model.safetensors"]).hexdigest() == own["model.safetensors"]
    assert json.loads(operations["run.json"])["stages"]["stage2"]["path"] == "stage2"


# -- the rule itself -----------------------------------------------------------------------------------------------


def test_recorded_paths_are_relative_inside_the_output_folder_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    (run / "data").mkdir()
    (run / ".genrec_run.json").write_text("{}")
    outside = tmp_path / "input.safetensors"
    outside.write_text("x")
    assert recorded_path(run / "data", run / "stage1") == "../data"  # inside the run folder
    assert recorded_path(run / "stage1", run / "stage1") == "."
    assert recorded_path(outside, run / "stage1") == str(outside)  # an input elsewhere: absolute
    assert recorded_path("org/dataset-on-the-hub", run / "stage1") == "org/dataset-on-the-hub"
    alone = tmp_path / "s2"  # a stage's folder outside any run: paths below it only
    (alone / "best").mkdir(parents=True)
    assert recorded_path(alone / "best", alone) == "best"
    assert recorded_path(run / "data", alone) == str(run / "data")
    assert resolve_recorded("../data", run / "stage1") == run / "stage1" / ".." / "data"
    assert resolve_recorded(str(outside), run / "stage1") == outside  # older records: absolute, as they are
