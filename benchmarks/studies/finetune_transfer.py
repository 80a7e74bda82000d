"""Summarise a fine-tuning measurement: `genrec finetune` run folders (transfer and --scratch control) side by side.

Reads each run folder's ``run.json`` (test and validation metrics, Stage II steps, the transfer report and the
code table hash, which must be equal within a pair) and Stage II's logged training loss (the newest
checkpoint's ``trainer_state.json``); prints a markdown table and, with ``--figure``, plots the training-loss
curves (needs matplotlib).

    python benchmarks/studies/finetune_transfer.py \\
        --run "scratch, 2000 steps, seed 2024=/work/runs/xfer/scratch" \\
        --run "fine-tuned, 2000 steps, seed 2024=/work/runs/xfer/finetuned" \\
        --figure docs/figures/finetune_beauty_to_ml100k.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genrec.model_cards.run_card import stage2_log_history

METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="LABEL=RUN_FOLDER (repeat)")
    parser.add_argument("--figure", type=Path, default=None, help="write the training-loss curves here (PNG)")
    args = parser.parse_args()
    rows, curves = [], {}
    for spec in args.run:
        label, _, folder = spec.partition("=")
        run = Path(folder)
        summary = json.loads((run / "run.json").read_text())
        config = json.loads((run / "config.json").read_text())
        test, validation = summary["test_metrics"], summary.get("validation_metrics", {})
        stage2 = summary["stages"]["stage2"]
        rows.append(
            f"| {label} | {stage2['steps']} (best {stage2['best_step']}) | "
            + " | ".join(f"{test[m]:.4f}" for m in METRICS)
            + f" | {validation.get('recall@10', float('nan')):.4f} | {config['code_table_hash'][:12]} |"
        )
        curves[label] = [(r["step"], r["train/loss"]) for r in stage2_log_history(run / "stage2") if "train/loss" in r]
    print("| run | Stage II steps | test R@10 | test NDCG@10 | test R@20 | test NDCG@20 | validation R@10 | code table |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        for label, points in curves.items():
            if points:
                ax.plot(*zip(*points, strict=True), label=label)
        ax.set_xlabel("Stage II step")
        ax.set_ylabel("training loss (rec + distillation)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title("Beauty -> MovieLens-100K: fine-tuned vs from scratch")
        fig.tight_layout()
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, metadata={"Software": None})
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
