"""Issue 32, cases 1-4: genrec never deletes or overwrites what it did not make, never exports another
folder's model, never overwrites the model it fine-tunes, and never lets two jobs write one folder.

Every run uses the tiny profile of ``fault_fixtures`` on synthetic S3-Rec data (seconds per run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fault_fixtures import file_hashes, run_tiny, write_s3rec

from genrec.trainers.jobs.output_folder import (
    LOCK_FILE,
    MANIFEST_FILE,
    FolderInUseError,
    check_not_inside,
    claim_output_folder,
    locked,
)

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_s3rec(tmp_path_factory.mktemp("s3rec") / "data")


@pytest.fixture(scope="module")
def run_a(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("owned") / "a"
    run_tiny(data, out)
    return out


# -- 1. an output folder belongs to genrec or is refused --------------------------------------------------


def test_run_refuses_a_folder_it_did_not_make(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "stage1").mkdir()
    (out / "data" / "important.txt").write_text("my notes")
    (out / "stage1" / "notes.txt").write_text("more notes")
    (out / "README.md").write_text("# my project")
    (out / "config.json").write_text('{"mine": true}')
    before = file_hashes(out)
    with pytest.raises(FileExistsError, match="not made by genrec"):
        run_tiny(data, out)
    assert file_hashes(out) == before  # nothing touched, no manifest or lock left


def test_run_refuses_an_out_folder_holding_its_dataset(tmp_path: Path) -> None:
    out = tmp_path / "project"
    dataset = write_s3rec(out / "data")
    before = file_hashes(out)
    with pytest.raises(ValueError, match="contains the --dataset input"):
        run_tiny(dataset, out)
    with pytest.raises(ValueError, match="is the --dataset folder itself"):
        run_tiny(dataset, dataset)
    assert file_hashes(out) == before


def test_the_cli_says_it_in_one_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from genrec.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("# my project")
    assert main(["run", "--dataset", str(data), "--out", str(out), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not made by genrec" in err[0], err
    assert (out / "README.md").read_text() == "# my project"


def test_empty_and_own_folders_are_claimed(tmp_path: Path) -> None:
    fresh = claim_output_folder(tmp_path / "new" / "run", job="run")
    assert json.loads((fresh / MANIFEST_FILE).read_text())["format"] == "genrec-output-folder"
    (fresh / "stage1").mkdir()
    assert claim_output_folder(fresh, job="run") == fresh  # its own folder: reused
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "run.json").write_text("{}")  # a run folder written before manifests existed: adopted
    claim_output_folder(legacy, job="run")
    assert (legacy / MANIFEST_FILE).is_file()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError):
        claim_output_folder(afile, job="run")


def test_inputs_outside_the_output_folder_pass(tmp_path: Path) -> None:
    check_not_inside(tmp_path / "out", {"--dataset": "ml-100k", "--from": "org/model", "--x": None})
    (tmp_path / "sibling").mkdir()
    check_not_inside(tmp_path / "out", {"--dataset": tmp_path / "sibling"})
    with pytest.raises(ValueError, match="contains the --from input"):
        check_not_inside(tmp_path, {"--from": tmp_path / "sibling"})


# -- 2. a copied run folder exports its own model -----------------------------------------------------------


def test_a_copied_run_folder_exports_its_own_model(data: Path, run_a: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(run_a, copy)
    own = file_hashes(copy)
    run_tiny(data, run_a, seed=11)  # the original retrained with another seed: other weights
    assert file_hashes(run_a)["model.safetensors"] != own["model.safetensors"]
    summary = run_tiny(data, copy)  # rerun the copy: every stage reused, exported again
    after = file_hashes(copy)
    assert after["model.safetensors"] == own["model.safetensors"]
    assert after["model.safetensors"] == after["stage2/best/model.safetensors"]
    assert summary["seed"] == 7
    shutil.rmtree(run_a)  # the original gone: the copy still reruns
    run_tiny(data, copy)
    assert file_hashes(copy)["model.safetensors"] == own["model.safetensors"]


# -- 3. fine-tuning never writes over its source --------------------------------------------------------------


def test_finetune_refuses_out_equal_to_or_around_from(data: Path, tmp_path: Path, run_a: Path) -> None:
    from genrec.trainers.jobs.finetune import finetune_unger

    if not run_a.exists():  # the copy test above removed it
        run_tiny(data, run_a)
    before = file_hashes(run_a)
    with pytest.raises(ValueError, match="--from folder itself"):
        finetune_unger(run_a, str(data), run_a, profile="quick", show_progress=False)
    with pytest.raises(ValueError, match="contains the --from input"):
        finetune_unger(run_a, str(data), run_a.parent, profile="quick", show_progress=False)
    assert file_hashes(run_a) == before


# -- 4. one job per output folder ------------------------------------------------------------------------------


def test_a_second_job_is_refused_while_the_first_holds_the_lock(data: Path, tmp_path: Path) -> None:
    out = claim_output_folder(tmp_path / "run", job="run")
    with locked(out, job="run"):
        holder = json.loads((out / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(FolderInUseError, match=f"PID {os.getpid()} on {socket.gethostname()}"):
            run_tiny(data, out)
    assert not (out / LOCK_FILE).exists()  # released on exit


def test_a_stale_lock_is_taken_over(data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = claim_output_folder(tmp_path / "run", job="run")
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "job": "run"}))
    summary = run_tiny(data, out)
    assert summary["test_metrics"] and "stale lock" in caplog.text
    assert not (out / LOCK_FILE).exists()


def test_the_lock_is_released_when_the_job_fails(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), locked(out, job="run"):
        raise RuntimeError("boom")
    assert not (out / LOCK_FILE).exists()
