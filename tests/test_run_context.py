"""The run summary's stage times: a reused stage keeps the time it took, or says it was reused when none is known."""

from __future__ import annotations

import json
import time
from pathlib import Path

from genrec.trainers.jobs.profiles import RUN_SUMMARY_FILE
from genrec.trainers.jobs.run_context import RunContext
from genrec.trainers.jobs.run_report import format_run_report


def _context(out: Path) -> RunContext:
    for name in ("embeddings", "stage2"):
        (out / name).mkdir()
    context = RunContext(out_dir=out, ledger=None, seed=0)
    context.load_previous()
    return context


def test_reused_stage_keeps_its_recorded_time(tmp_path: Path) -> None:
    (tmp_path / RUN_SUMMARY_FILE).write_text(json.dumps({"stages": {"embed": {"seconds": 12.5}}, "total_seconds": 40}))
    context = _context(tmp_path)
    entry = context.record_stage("embed", time.perf_counter(), reused=True, path=tmp_path / "embeddings")
    assert entry == {"seconds": 12.5, "path": "embeddings"} and "embed" not in context.computed


def test_reused_stage_without_a_recorded_time_says_so(tmp_path: Path) -> None:
    context = _context(tmp_path)  # a copied run folder whose run.json did not come along
    reused = context.record_stage("embed", time.perf_counter() - 3, reused=True, path=tmp_path / "embeddings")
    computed = context.record_stage("stage2", time.perf_counter() - 2, path=tmp_path / "stage2")
    assert reused == {"seconds": None, "reused": True, "path": "embeddings"}
    assert computed["seconds"] >= 2 and context.computed == {"stage2"}
    summary = context.write_summary()
    assert json.loads((tmp_path / RUN_SUMMARY_FILE).read_text())["stages"]["embed"]["seconds"] is None
    report = format_run_report({**summary, "stopped_after": "stage2"}, tmp_path, dataset="x")
    embed_line = next(line for line in report.splitlines() if line.startswith("embed"))
    assert "reused" in embed_line and "0.0" not in embed_line
