"""``genrec stage1``: UNGER Stage I.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.stage1` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter, add_training_flags, json_object


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stage1",
        formatter_class=HelpFormatter,
        help="UNGER Stage I: integrated semantic + collaborative item embeddings",
        description="""Train UNGER's Stage I fusion model (DIN over item ids + AdaLN-adapted text embeddings,
InfoNCE alignment, next-item prediction) and export the integrated item embeddings.

Reads:  --data (prepared dataset), --embeddings (semantic item embeddings from `genrec embed`).
Writes: OUT/integrated_embeddings.safetensors (-> `genrec quantize`), OUT/best/ (model), OUT/checkpoints/
        (resume after interruption: run the same command again), OUT/stage1_result.json.
Time:   ML-100K: a few minutes; Beauty: under 20 minutes on 2 CPU cores (early stopping).""",
    )
    p.add_argument("--data", required=True, help="prepared dataset folder or Hub id")
    p.add_argument("--embeddings", required=True, type=Path, help="semantic ItemEmbeddings .safetensors")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--mode", choices=("unger", "semantic_only", "collaborative_only", "concat"), default="unger",
                   help="item embedding: unger (item id fused with the adapted text embedding, aligned), or the "
                        "ablations text only, id only, or both concatenated")
    p.add_argument("--fusion", choices=("sum", "gate", "mlp"), default=None, help="default: the config's")
    p.add_argument("--encoder", choices=("din", "sasrec"), default="din", help="collaborative encoder")
    p.add_argument("--config", type=json_object, default={}, help="JSON object of UngerFusionConfig overrides")
    p.add_argument("--epochs", type=int, default=None, help="default 20 (with early stopping)")
    p.add_argument("--max-steps", type=int, default=None, help="optimiser steps, instead of --epochs")
    p.add_argument("--patience", type=int, default=5, help="evaluations without a better validation Recall@10")
    p.add_argument("--time-budget-min", type=float, default=None, help="stop (resumably) after this long")
    add_training_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import stage1

    print(stage1(
        args.data, args.embeddings, args.out, mode=args.mode, fusion=args.fusion, encoder=args.encoder,
        config=args.config, epochs=args.epochs, max_steps=args.max_steps, patience=args.patience,
        time_budget_min=args.time_budget_min, mixed_precision=args.mixed_precision, seed=args.seed,
        restart=args.restart, data_revision=args.data_revision, report_to=args.report_to,
    ))
    return 0
