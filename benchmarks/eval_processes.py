"""Evaluation wall time with one and with two processes, side by side (issue 28: evaluation split across
processes should take about half the time of one).

The same seeded UNGER model (the default profile's Stage II shape, random weights: the cost does not depend on
them) over a synthetic code table is evaluated on the same users by ``evaluate_model`` under
``torch.distributed.run`` with 1 and with 2 processes (gloo, one torch thread each), alternating ``--rounds``
times; each launch times only the evaluation (after one warm-up batch), as the slowest process saw it. The
report gives the medians and the ratio two / one, and checks that both gave the same metrics.

    python benchmarks/eval_processes.py --users 512 --items 5000 --beams 20 --json eval_processes.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, os, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from datasets import Dataset, DatasetDict
from genrec.modeling.configuration_unger import UngerConfig
from genrec.modeling.modeling_unger import UngerForGenerativeRecommendation
from genrec.tokenization.code_table import CodeTable
from genrec.tokenization.tokenization_semantic_id import SemanticIDTokenizer
from genrec.trainers.engine.processes import process_index, wait_for_everyone
from genrec.trainers.evaluation.evaluator import evaluate_model

users, items, beams, batch, out = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
ids = [str(i) for i in range(items)]
codes = np.random.default_rng(0).integers(0, 256, size=(items, 3))
tok = SemanticIDTokenizer.from_code_table(CodeTable.from_codes(ids, codes, codebook_sizes=[256] * 3, collisions="append"))
torch.manual_seed(0)
config = UngerConfig.from_tokenizer(tok, encoder_layers=4, history_mode="per_item")
model = UngerForGenerativeRecommendation(config).eval()
rng = np.random.default_rng(1)
rows = [[ids[j] for j in rng.integers(0, items, size=rng.integers(3, 21))] for _ in range(users)]
data = DatasetDict({"test": Dataset.from_dict({"user_id": [f"u{i}" for i in range(users)], "item_ids": rows})})
model.recommend([rows[0][:-1]], tok, k=20, num_beams=beams, exclude_history=False)  # warm-up
wait_for_everyone()
start = time.perf_counter()
result = evaluate_model(model, tok, data, "test", num_beams=beams, batch_size=batch, show_progress=False)
seconds = time.perf_counter() - start
Path = __import__("pathlib").Path
Path(out, f"rank{process_index()}.json").write_text(json.dumps({"seconds": seconds, "metrics": result["metrics"]}))
"""


def launch(processes: int, args: argparse.Namespace, work: Path) -> tuple[float, dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = work / f"p{processes}-{time.monotonic_ns()}"
    out.mkdir()
    script = work / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
               "127.0.0.1", "--master_port", str(port), str(script), str(args.users), str(args.items),
               str(args.beams), str(args.batch), str(out)]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]
    return max(r["seconds"] for r in ranks), ranks[0]["metrics"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    times: dict[int, list[float]] = {1: [], 2: []}
    metrics: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for processes in (1, 2):  # alternating, so that load on a shared machine hits both alike
                seconds, metrics[processes] = launch(processes, args, Path(tmp))
                times[processes].append(seconds)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    report = {
        "users": args.users, "items": args.items, "beams": args.beams, "batch": args.batch, "rounds": args.rounds,
        "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "seconds_one_process": times[1], "seconds_two_processes": times[2],
        "median_one": round(one, 3), "median_two": round(two, 3), "ratio_two_over_one": round(two / one, 3),
        "users_per_s_one": round(args.users / one, 1), "users_per_s_two": round(args.users / two, 1),
        "same_metrics": metrics[1] == metrics[2],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["same_metrics"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
