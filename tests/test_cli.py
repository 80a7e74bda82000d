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
