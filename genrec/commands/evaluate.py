"""``genrec evaluate``: a trained model's metrics on a split (any family).

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.evaluate` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        formatter_class=HelpFormatter,
        help="Recall/NDCG/MRR@K of a trained UNGER or TTDS model on a split",
        description="""Evaluate a trained UNGER or TTDS model by constrained beam search over the full item corpus.

Reads:  --model (a run folder or Stage II's best/: model + tokenizer; or a TTDS folder, `genrec finetune`'s
        OUT/final: base by name + adapter + towers + code tables), --data (prepared dataset; its item
        catalogue must be the model's code table, e.g. OUT/data of the same `genrec run`).
Writes: stdout (metric table); --out JSON with every metric (--per-user: and each user's target rank).
Time:   ML-100K test (943 users, 20 beams): seconds to a minute; Beauty (22,363 users): minutes on CPU.""",
    )
    p.add_argument("--model", required=True, help="model folder (or Hub id) with its tokenizer")
    p.add_argument("--data", required=True, help="prepared dataset folder or Hub id")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"), help="split to evaluate")
    p.add_argument("--beams", type=int, default=20, help="beams of the constrained beam search (>= the largest cut-off)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 20], help="cut-offs")
    p.add_argument("--batch-size", type=int, default=256, help="users per beam-search batch")
    p.add_argument("--max-users", type=int, default=None, help="evaluate the first N users only (default: all)")
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    p.add_argument("--per-user", action="store_true",
                   help="also write each user's target rank into --out (benchmarks/paired_compare.py pairs two "
                        "such files: is one model ahead of another beyond the test set's noise?)")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --model")
    p.add_argument("--transition-weight", type=float, default=None,
                   help="w of the transition prior mixture (1 - w) p_model + w p_transition; default: the "
                        "model's own (a `genrec run` folder carries the weight chosen on validation); 0: the "
                        "model alone")
    p.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import evaluate

    print(evaluate(
        args.model, args.data, split=args.split, k_values=args.k, num_beams=args.beams, batch_size=args.batch_size,
        max_users=args.max_users, out=args.out, per_user=args.per_user, revision=args.revision,
        transition_weight=args.transition_weight, data_revision=args.data_revision,
    ))
    return 0
