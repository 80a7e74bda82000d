"""The first minutes of `genrec run`: a mistyped dataset fails at once, and a run that fails before its first stage
finished leaves the output folder as it found it.

A typo such as ``--dataset ml-100kk`` used to be taken for a Hub id: the run waited for the Hub, blamed it, and
left ``OUT/.genrec_run.json`` and ``OUT/fingerprints/prepare.json`` behind, so the next try found a folder it had
not asked for. (Tests run with ``HF_HUB_OFFLINE=1``, see conftest: a Hub id fails without the network.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fault_fixtures import file_hashes, run_tiny, write_s3rec

from genrec.cli import main
from genrec.data_scripts.dataset_names import is_hub_repo_id
from genrec.trainers.jobs.output_folder import (
    LOCK_FILE,
    MANIFEST_FILE,
    claim_output_folder,
    owned_output_folder,
)
from genrec.trainers.jobs.profiles import infer_source

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(capsys: pytest.CaptureFixture[str], verb: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"genrec {verb}: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------ unknown dataset names


def test_a_mistyped_dataset_name_is_one_line_with_the_closest_known_name(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs" / "x"
    assert main(["run", "--dataset", "ml-100kk", "--out", str(out), "--quick"]) == 2
    line = _one_line(capsys, "run")
    assert "unknown dataset 'ml-100kk' (did you mean 'ml-100k'?); known names: ml-100k" in line
    assert "a Hub id owner/name" in line
    assert list(tmp_path.iterdir()) == []  # nothing created, not even runs/


def test_the_name_is_refused_before_torch_loads(tmp_path: Path) -> None:
    """At once: the check runs before the job's heavy imports (a fresh process, so torch is not yet loaded)."""
    code = (
        "import sys; from genrec.cli import main; "
        f"code = main(['run', '--dataset', 'movielens', '--out', {str(tmp_path / 'out')!r}]); "
        "print(code, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr
    assert "did you mean 'ml-100k'?" in result.stderr
    assert not (tmp_path / "out").exists()


def test_what_a_dataset_argument_may_be(tmp_path: Path) -> None:
    assert infer_source("ML-100K") == infer_source("movielens-100k") == "ml-100k"
    assert infer_source("some-org/beauty-2014") == "hub"  # a Hub id: tried, not refused
    assert infer_source(str(write_s3rec(tmp_path / "raw"))) == "s3rec"
    (tmp_path / "amazon-beauty").mkdir()
    with pytest.raises(ValueError, match=r"no such folder \(did you mean '.*amazon-beauty'\?\)"):
        infer_source(str(tmp_path / "amazon-beuty"))
    with pytest.raises(ValueError, match="unknown dataset 'beauty'; known names: ml-100k"):
        infer_source("beauty")
    assert [is_hub_repo_id(name) for name in ("org/name", "org/name.v2", "org", "a/b/c", "org/-x", "a--b/c")] == [
        True, True, False, False, False, False,
    ]


def test_prepare_hub_refuses_a_name_that_is_no_folder_nor_hub_id(tmp_path: Path, capsys) -> None:
    assert main(["prepare", "hub", "--path", "ml100k", "--out", str(tmp_path / "out")]) == 2
    line = _one_line(capsys, "prepare")
    assert "--path ml100k: no such folder, and not a Hub dataset id owner/name" in line
    assert "genrec prepare ml-100k" in line  # the source that reads it
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- no debris from a run that finished nothing


def test_a_run_that_fails_in_prepare_leaves_no_new_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs" / "hub"
    assert main(["run", "--dataset", "someone/no-such-dataset", "--out", str(out), "--quick"]) == 2
    _one_line(capsys, "run")
    assert list(tmp_path.iterdir()) == []  # neither OUT (manifest, lock, fingerprints/) nor the runs/ it made


def test_a_run_that_fails_in_prepare_adds_nothing_to_an_existing_folder(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--dataset", "someone/no-such-dataset", "--out", str(empty), "--quick"]) == 2
    _one_line(capsys, "run")
    assert list(empty.iterdir()) == []

    # a genrec folder that holds files of an earlier job but no prepared dataset: kept byte for byte, nothing added
    earlier = claim_output_folder(tmp_path / "earlier", job="run")
    (earlier / "fingerprints").mkdir()
    (earlier / "fingerprints" / "stage1.json").write_text('{"settings": {}}\n')
    (earlier / "notes.txt").write_text("mine\n")
    before = file_hashes(earlier)
    assert main(["run", "--dataset", "someone/no-such-dataset", "--out", str(earlier), "--quick"]) == 2
    _one_line(capsys, "run")
    assert file_hashes(earlier) == before
    assert sorted(p.name for p in earlier.iterdir()) == sorted([MANIFEST_FILE, "fingerprints", "notes.txt"])


def test_a_bad_dataset_folder_leaves_no_new_folder(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "sequences.txt").write_text("not a user line\n")  # an S3-Rec folder whose file is malformed
    out = tmp_path / "out"
    assert main(["run", "--dataset", str(raw), "--out", str(out), "--quick"]) == 2
    _one_line(capsys, "run")
    assert not out.exists()


def test_a_failure_after_prepare_keeps_what_the_run_made(tmp_path: Path, monkeypatch) -> None:
    """Only a run that finished nothing is undone: once the dataset is prepared, a later failure keeps it (and its
    fingerprint), so that the rerun resumes instead of preparing again."""
    import genrec.data_scripts.embeddings as embeddings

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(embeddings, "embed_dataset", broken)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        run_tiny(write_s3rec(tmp_path / "raw"), out)
    assert (out / "data" / "README.md").is_file()
    assert (out / "fingerprints" / "prepare.json").is_file() and (out / MANIFEST_FILE).is_file()
    assert not (out / LOCK_FILE).exists()


def test_owned_output_folder_undoes_only_a_failure_it_is_told_to(tmp_path: Path) -> None:
    nothing_kept, everything_kept = (lambda folder: False), (lambda folder: True)
    fresh = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), owned_output_folder(fresh, job="t", keep_on_failure=nothing_kept) as out:
        (out / "sub").mkdir()
        (out / "sub" / "file").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(RuntimeError), owned_output_folder(fresh, job="t", keep_on_failure=everything_kept) as out:
        (out / "file").write_text("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in fresh.iterdir()) == sorted([MANIFEST_FILE, "file"])

    with owned_output_folder(tmp_path / "ok", job="t", keep_on_failure=nothing_kept) as out:  # no failure: kept
        (out / "file").write_text("x")
    assert (tmp_path / "ok" / "file").is_file() and not (tmp_path / "ok" / LOCK_FILE).exists()
