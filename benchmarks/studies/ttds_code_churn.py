"""Which part of TTDS re-draws the dynamic codes: the LLM's adaptation or the towers' own training?

Three short TTDS runs on a prepared ML-100K folder and a base (e.g. the tiny pretrained base that
``benchmarks/ttds_ml100k.py --pretrain-base-steps N`` writes), each with ``warmup`` warm-up steps and one code
update after ``steps`` joint steps, and the share of item codes that update changed:

* ``all``: everything trains (LoRA + token rows at ``--learning-rate``, towers at their default 1e-4);
* ``llm_frozen``: LoRA and token rows at LR ~0 (1e-12; 0 is not a valid schedule base), towers train;
* ``towers_frozen``: tower LR 0, the LLM trains (the EMA codebooks still follow the latents).

Usage::

    python benchmarks/studies/ttds_code_churn.py --data W/data --base W/tiny-llama-pretrained-1000 --work-dir W/churn
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ARMS = {
    "all": {},
    "llm_frozen": {"learning_rate": 1e-12, "warmup_learning_rate": 1e-12},
    "towers_frozen": {"tower_learning_rate": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="prepared genrec dataset folder (ML-100K)")
    parser.add_argument("--base", required=True, help="base LLM folder or name")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=300, help="joint steps before the one code update")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--train-base", action="store_true")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from genrec.trainers.jobs.ttds import run_ttds

    report = {}
    for name in args.arms:
        training = {
            "seed": 0, "warmup_steps": args.warmup, "max_steps": args.steps + 1, "code_update_steps": args.steps,
            "train_batch_size": args.batch_size, "alignment_batch_size": 16, "encode_batch_size": 64,
            "logging_steps": 100, "learning_rate": args.learning_rate, "save_steps": 0, "history_loss": True,
            "tasks": ("seqrec", "item2tokens"), **ARMS[name],
        }
        summary = run_ttds(
            args.data, args.base, Path(args.work_dir) / name,
            config_overrides={"num_levels": 3, "codebook_size": 16, "num_collision_tokens": 256, "lora_r": 8,
                              "lora_alpha": 16, "train_base": args.train_base},
            training=training, dtype="float32", eval_splits=(),
        )
        report[name] = [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()
             if k == "step" or k.startswith(("codes/item_codes_changed", "codes/item_collision"))}
            for entry in summary.get("code_history", [])
        ]
        print(name, json.dumps(report[name]), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"args": vars(args), "arms": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
