"""The GPU check: one script, at most ~8 minutes on one CUDA machine, one JSON of what it measured.

Run it first whenever a GPU machine is lent (``bash benchmarks/gpu_check.sh``), then commit the JSON it writes
(``benchmarks/results/gpu_check-<device>.json``) and the fixes it forces. Steps, each timed and recorded with its
exit status and the tail of its output (a failing step does not stop the others):

1. ``environment``: torch / CUDA versions, device name, bf16 support, GPU count.
2. ``quick_run``: ``genrec run --quick`` on the embedded ML-100K, on CUDA, with ``--mixed-precision bf16`` where
   the GPU supports it: every stage of the main job on the GPU; its test metrics and stage times.
3. ``stage2_step``: ``benchmarks/stage2_step_time.py`` at batch 256 on CUDA: a Stage II training step with the
   per-item and the flattened history feeds, side by side.
4. ``evaluation``: ``benchmarks/serving_speed.py`` on the quick run's model: users/s of constrained beam search at
   20 and 100 beams, batch 256.
5. ``two_process_run``: with two or more GPUs, the quick main job under ``accelerate launch --num_processes 2``;
   its test metrics next to the one-process run's.

``--dry-run`` runs the same steps on the CPU at toy sizes (a synthetic 60-user dataset, batch 8, a few steps) in a
minute or two: what the test suite runs so that the script is known to work before a GPU is lent.

    bash benchmarks/gpu_check.sh                       # on the GPU machine
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-check   # the CPU dry run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": cuda,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
        "python": sys.version.split()[0],
    }


def run_step(name: str, command: list[str], *, timeout: float, env: dict | None = None) -> dict:
    """Run one step as a subprocess; its seconds, exit status and output tail."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, **(env or {})})
        status, tail = done.returncode, (done.stdout + done.stderr)[-2000:]
    except subprocess.TimeoutExpired as error:
        status, tail = "timeout", str(error)[-2000:]
    seconds = round(time.perf_counter() - start, 2)
    print(f"[gpu_check] {name}: status {status} in {seconds} s", flush=True)
    return {"command": " ".join(command), "status": status, "seconds": seconds, "output_tail": tail}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="work folder")
    parser.add_argument("--json", type=Path, default=None,
                        help="the report (default: benchmarks/results/gpu_check-<device>.json; dry run: OUT/gpu_check.json)")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU (what the tests run)")
    args = parser.parse_args(argv)
    env_info = environment()
    dry = args.dry_run
    if not dry and not env_info["cuda_available"]:
        print("[gpu_check] no CUDA device: run it on the GPU machine, or --dry-run here", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    report: dict = {"dry_run": dry, "environment": env_info, "steps": {}}
    steps = report["steps"]

    # 2. the quick main job, every stage on the device
    if dry:
        from synthetic_catalogue import (
            write_synthetic,  # benchmarks/ sibling (the script's folder is on sys.path)
        )

        dataset = str(write_synthetic(args.out / "toy", 60, interactions_per_item=8))
        run_args = ["--dataset", dataset, "--quick", "--stage2-steps", "4"]
    else:
        dataset, run_args = "ml-100k", ["--quick"]
    precision = ["--mixed-precision", "bf16"] if env_info["bf16"] else []
    quick = args.out / "quick"
    steps["quick_run"] = run_step("quick_run", [py, "-m", "genrec.cli", "run", *run_args, "--out", str(quick),
                                                "--overwrite", *precision], timeout=300)
    summary = read_json(quick / "run.json") or {}
    steps["quick_run"]["test_metrics"] = summary.get("test_metrics")
    steps["quick_run"]["model_test_metrics"] = summary.get("model_test_metrics")
    steps["quick_run"]["stage_seconds"] = {k: v.get("seconds") for k, v in summary.get("stages", {}).items()}

    # 3. one Stage II training step at batch 256, per-item vs flattened history feed
    step_json = args.out / "stage2_step.json"
    sizes = ["--batch", "8", "--steps", "2", "--warmup", "1", "--items", "300"] if dry else ["--batch", "256", "--steps", "20"]
    device = ["--device", "cpu" if dry else "cuda"]
    steps["stage2_step"] = run_step("stage2_step", [py, str(HERE / "stage2_step_time.py"), *sizes, *device,
                                                    "--json", str(step_json)], timeout=180)
    steps["stage2_step"]["result"] = read_json(step_json)

    # 4. evaluation users/s at 20 and 100 beams (the quick run's model)
    speed_json = args.out / "evaluation.json"
    speed = ["--batch", "8", "--beams", "20", "--rounds", "1", "--single-users", "1"] if dry else [
        "--batch", "256", "--beams", "20", "100", "--rounds", "3", "--single-users", "4"]
    steps["evaluation"] = run_step("evaluation", [py, str(HERE / "serving_speed.py"), "--model-dir", str(quick),
                                                  "--methods", "unger", *speed, "--json", str(speed_json)], timeout=180)
    steps["evaluation"]["result"] = read_json(speed_json)

    # 5. the main job under two processes (two GPUs; never in the dry run: the suite tests two CPU processes)
    if env_info["gpus"] >= 2 and not dry:
        two = args.out / "quick-2proc"
        steps["two_process_run"] = run_step("two_process_run", [
            py, "-m", "accelerate.commands.launch", "--num_processes", "2", "-m", "genrec.cli", "run", *run_args,
            "--out", str(two), "--overwrite", *precision], timeout=300)
        steps["two_process_run"]["test_metrics"] = (read_json(two / "run.json") or {}).get("test_metrics")
    else:
        steps["two_process_run"] = {"status": "skipped", "reason": "fewer than two GPUs" if not dry else "dry run"}

    target = args.json or (args.out / "gpu_check.json" if dry else
                           HERE / "results" / f"gpu_check-{env_info['device_name'].replace(' ', '_')}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[gpu_check] wrote {target}")
    failed = [name for name, step in steps.items() if step.get("status") not in (0, "skipped")]
    if failed:
        print(f"[gpu_check] failed steps: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
