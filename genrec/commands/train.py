"""``genrec train``: UNGER Stage II.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.train` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter, add_training_flags, json_object


def add_parser(sub: argparse._SubParsersAction) -> None:
    from genrec.trainers.jobs.verbs import TRAIN_DEFAULTS  # constants only: no torch

    p = sub.add_parser(
        "train",
        formatter_class=HelpFormatter,
        help="UNGER Stage II: the generative recommender over semantic IDs",
        description="""Train UNGER's encoder-decoder on the users' histories as semantic-ID codes, with the
intra-modality distillation loss when Stage I's integrated embeddings are given; validate by constrained
beam search, keep the best model, report its test metrics.

Reads:  --data (prepared dataset), --tokenizer (OUT/tokenizer of `genrec quantize`),
        --integrated-embeddings (Stage I export, optional: enables distillation).
Writes: OUT/best/ (model + tokenizer, loadable with AutoModel / AutoTokenizer), OUT/checkpoints/ (resume:
        run the same command again), OUT/stage2_result.json (validation + test metrics).
Time:   ~0.13 s (per_item, default) / ~0.35 s (flattened) per batch-256 step on 2 CPU cores; ML-100K
        3,000 steps: ~7 min; the paper's 20k steps on Beauty: hours on CPU, minutes on a GPU.""",
    )
    p.add_argument("--data", required=True, help="prepared dataset folder or Hub id")
    p.add_argument("--tokenizer", required=True, help="SemanticIDTokenizer folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--integrated-embeddings", type=Path, default=None,
                   help="Stage I's integrated_embeddings.safetensors: enables the distillation loss (default: none, "
                        "no distillation)")
    p.add_argument("--history-mode", choices=("flattened", "per_item"), default=None, help="default: config's")
    p.add_argument("--constrained-training", action="store_true", help="softmax over valid children only")
    p.add_argument("--distillation-weight", type=float, default=None, help="lambda (default 1)")
    p.add_argument("--config", type=json_object, default={}, help="JSON object of UngerConfig overrides")
    p.add_argument("--max-steps", type=int, default=TRAIN_DEFAULTS["max_steps"], help="optimiser steps")
    p.add_argument("--warmup-steps", type=int, default=TRAIN_DEFAULTS["warmup_steps"],
                   help="steps of the linear learning-rate warm-up")
    p.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS["batch_size"],
                   help="examples per optimiser step (the global batch of all processes)")
    p.add_argument("--lr", type=float, default=TRAIN_DEFAULTS["lr"], help="peak learning rate (Adam)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default: epoch)")
    p.add_argument("--eval-beams", type=int, default=20, help="beams of the validation beam search")
    p.add_argument("--max-eval-users", type=int, default=None, help="validate on the first N users only")
    p.add_argument("--patience", type=int, default=None,
                   help="validations without improvement before stopping (default: never stop early)")
    add_training_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import train

    print(train(
        args.data, args.tokenizer, args.out, integrated_embeddings=args.integrated_embeddings,
        history_mode=args.history_mode, constrained_training=args.constrained_training,
        distillation_weight=args.distillation_weight, config=args.config, max_steps=args.max_steps,
        warmup_steps=args.warmup_steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
        eval_beams=args.eval_beams, max_eval_users=args.max_eval_users, patience=args.patience,
        mixed_precision=args.mixed_precision, seed=args.seed, restart=args.restart,
        data_revision=args.data_revision, report_to=args.report_to,
    ))
    return 0
