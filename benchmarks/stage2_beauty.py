"""UNGER Stage II on Amazon Beauty: test Recall/NDCG@10/20 of one variant, next to the paper's numbers.

One process trains one variant (history mode, constrained training, distillation) so that variants can run
side by side, each on its own cores, with identical data, codes, steps and seed; compare their JSON files.

    python benchmarks/stage2_beauty.py --data runs/beauty/data \\
        --integrated runs/beauty/stage1/integrated_embeddings.safetensors \\
        --name per_item --config '{"history_mode": "per_item"}' --max-steps 3000 --threads 1

The semantic IDs (residual k-means 3 x 256 of the integrated embeddings, seed 2024) are computed once into
WORK/semantic_ids and shared by every variant. Validation runs on the first --max-eval-users users (model
selection); the test split is always evaluated on every user with 20 beams (the paper uses 100 beams for its
tables; 20 is enough for @20 cut-offs and 5x cheaper on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from genrec.modeling.configuration_unger import UngerConfig
from genrec.trainers.quantize import quantize_embeddings
from genrec.trainers.stage2 import train_stage2

PAPER = {"recall@10": 0.0939, "recall@20": 0.1289, "ndcg@10": 0.0559, "ndcg@20": 0.0646}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="prepared Beauty dataset folder")
    parser.add_argument("--integrated", required=True, type=Path, help="Stage I integrated embeddings")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/genrec-bench/stage2_beauty"))
    parser.add_argument("--name", required=True, help="variant name (output sub-folder)")
    parser.add_argument("--config", default="{}", help="JSON object of UngerConfig overrides")
    parser.add_argument("--no-distillation", action="store_true", help="train without the integrated embeddings")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--max-eval-users", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    sid_dir = args.work_dir / "semantic_ids"
    lock = args.work_dir / "semantic_ids.lock"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if not (sid_dir / "quantize.json").is_file():
        try:
            lock.mkdir()  # one process quantizes; the others wait for its result
            quantize_embeddings(args.integrated, sid_dir, seed=args.seed, overwrite=True, show_progress=False)
            lock.rmdir()
        except FileExistsError:
            while not (sid_dir / "quantize.json").is_file():
                time.sleep(2)
    codes = json.loads((sid_dir / "quantize.json").read_text())
    print(f"semantic IDs: {codes['codebook_sizes']}, collision rate {codes['collision_rate']:.4f}", flush=True)

    result = train_stage2(
        args.data, sid_dir / "tokenizer", args.work_dir / "runs" / args.name,
        config=UngerConfig(**json.loads(args.config)),
        integrated_embeddings=None if args.no_distillation else args.integrated,
        max_steps=args.max_steps, warmup_steps=args.warmup_steps, eval_every=args.eval_every,
        max_eval_users=args.max_eval_users, seed=args.seed, show_progress=False, log_with=None,
    )
    summary = {
        "variant": args.name, "config": json.loads(args.config), "distillation": result.distillation,
        "steps": result.global_step, "best_step": result.best_step, "wall_time_s": result.wall_time_s,
        "threads": torch.get_num_threads(), "hardware": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}",
        "validation": result.validation_metrics, "test": result.test_metrics, "paper_test": PAPER,
        "semantic_ids": {k: codes[k] for k in ("codebook_sizes", "collision_rate")},
    }
    out = args.work_dir / f"{args.name}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.name}: {result.global_step} steps in {result.wall_time_s:.0f} s")
    print("metric      ours     paper")
    for key, paper in PAPER.items():
        print(f"{key:10s} {result.test_metrics.get(key, float('nan')):.4f}   {paper:.4f}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
