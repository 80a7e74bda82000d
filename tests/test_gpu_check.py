"""The GPU check's CPU dry run: every step of ``benchmarks/gpu_check.sh`` runs at toy sizes and the report is
written, so the script is known to work before a GPU machine is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT


def test_gpu_check_dry_run_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "check"
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=420, env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
                                                          "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["environment"]["torch"]
    steps = report["steps"]
    assert {name: step["status"] for name, step in steps.items()} == {
        "quick_run": 0, "stage2_step": 0, "evaluation": 0, "two_process_run": "skipped"}
    assert steps["quick_run"]["test_metrics"]["invalid_rate"] == 0.0
    assert set(steps["quick_run"]["stage_seconds"]) >= {"prepare", "embed", "stage1", "quantize", "stage2", "export"}
    assert steps["stage2_step"]["result"]["batch"] == 8
    assert steps["evaluation"]["result"]["model_dir"] == str(out / "quick")
