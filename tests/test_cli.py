"""The `genrec` console script: every verb documents itself, bad input is one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genrec.cli import build_parser, main

VERBS = ["run", "prepare", "embed", "quantize", "stage1", "balance", "train", "evaluate", "recommend", "finetune", "push"]


@pytest.mark.parametrize("verb", VERBS)
def test_help_says_what_it_reads_writes_and_how_long(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("Reads:", "Writes:", "Time:"):
        assert word in text, f"`genrec {verb} --help` does not say {word}"


def test_top_level_help_lists_verbs() -> None:
    text = build_parser().format_help()
    for verb in VERBS:
        assert verb in text


def test_no_verb_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "genrec.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("genrec ")


def test_bad_input_is_one_clear_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["prepare", "s3rec", "--path", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("genrec prepare: error:") and "missing" in err
    assert "Traceback" not in err


def test_push_refuses_what_is_not_a_model_folder_before_any_network(tmp_path, capsys) -> None:
    assert main(["push", str(tmp_path / "missing"), "org/repo"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "org/repo"]) == 2
    assert "no config.json" in capsys.readouterr().err


def _one_process_group() -> None:
    import torch.distributed as dist
    from testing_utils import free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)


def test_the_cli_closes_the_process_group_of_a_launch_even_after_an_error(tmp_path) -> None:
    """Under torchrun / accelerate launch a process that exits with a live gloo group can abort in its teardown
    (SIGABRT after the work is done: the launcher then reports the job failed); the CLI closes the group on the
    way out, after a failure too."""
    import torch.distributed as dist

    _one_process_group()
    try:
        assert main(["prepare", "s3rec", "--path", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_end_processes_closes_the_group_once_and_is_a_no_op_without_one() -> None:
    import torch.distributed as dist

    from genrec.trainers.engine.processes import end_processes

    end_processes()  # no group: nothing to do
    _one_process_group()
    end_processes()
    assert not dist.is_initialized()
    end_processes()
