"""Large catalogues train with sampled losses by default (issue 28): above a measured catalogue size the main
job switches Stage I to a sampled softmax and Stage II's distillation to sampled negatives, says so in the log
and in run.json, and leaves a profile that sets them alone."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from fault_fixtures import TINY, run_tiny, write_s3rec

import genrec.trainers.jobs.profiles as profiles
from genrec.trainers.jobs.profiles import PROFILES, SAMPLED_LOSS_ABOVE_ITEMS, SAMPLED_NEGATIVES, for_catalogue

pytestmark = pytest.mark.usefixtures("one_thread")


def test_small_catalogues_keep_the_profile() -> None:
    default = PROFILES["default"]
    assert for_catalogue(default, SAMPLED_LOSS_ABOVE_ITEMS) == (default, [])  # Beauty, ML-100K: unchanged


def test_large_catalogues_switch_to_sampled_losses_unless_the_profile_chose() -> None:
    large, changes = for_catalogue(PROFILES["default"], SAMPLED_LOSS_ABOVE_ITEMS + 1)
    assert large.stage1_config["loss_type"] == "sampled" and large.stage1_config["num_negatives"] == SAMPLED_NEGATIVES
    assert large.stage2_config["distillation_negatives"] == SAMPLED_NEGATIVES and len(changes) == 2
    assert large.stage2_config["encoder_layers"] == PROFILES["default"].stage2_config["encoder_layers"]
    chosen = replace(TINY, stage1_config={**TINY.stage1_config, "loss_type": "full"},
                     stage2_config={**TINY.stage2_config, "distillation_negatives": 7})
    assert for_catalogue(chosen, 10**6) == (chosen, [])


def test_the_main_job_records_the_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(profiles, "SAMPLED_LOSS_ABOVE_ITEMS", 10)  # the 40-item toy catalogue counts as large
    data = write_s3rec(tmp_path / "raw")
    with caplog.at_level(logging.INFO):
        summary = run_tiny(data, tmp_path / "run")
    assert summary["profile"]["stage1_config"]["loss_type"] == "sampled"
    assert summary["profile"]["stage2_config"]["distillation_negatives"] == SAMPLED_NEGATIVES
    assert len(summary["sampled_losses"]) == 2 and "Stage I: sampled softmax" in caplog.text
    recorded = json.loads((tmp_path / "run" / "fingerprints" / "stage1.json").read_text())["settings"]
    assert recorded["stage1_config"]["loss_type"] == "sampled"  # a later run of another size recomputes Stage I
