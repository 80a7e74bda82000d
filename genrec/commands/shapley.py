"""``genrec shapley``: MSCGRec: each modality's Shapley contribution.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.analysis.shapley.modality_contribution` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shapley",
        formatter_class=HelpFormatter,
        help="MSCGRec: each modality's Shapley contribution (every subset of history modalities)",
        description="""Evaluate a trained MSCGRec model with every subset of its modalities present in the history
(the others replaced by the model's mask tokens) and attribute each metric to the modalities with exact
Shapley values (MSCGRec paper, §4.3 / Table 3b). Best on a model trained with --mask-probability 0.75.

Reads:  RUN (an MSCGRec run folder from `genrec run --model mscgrec`), RUN/data (or --data).
Writes: OUT/shapley.json and OUT/shapley.md (OUT defaults to RUN).
Time:   2^D full evaluations for D modalities: 4 for text + collaborative (ML-100K: a few minutes on
        2 CPU cores; Beauty's 22k test users: ~4 x 10 minutes).""",
    )
    p.add_argument("run", help="MSCGRec run folder")
    p.add_argument("--data", default=None, help="prepared dataset (default RUN/data)")
    p.add_argument("--split", choices=("test", "validation"), default="test", help="split to evaluate")
    p.add_argument("--metrics", nargs="+", default=None, help="metrics to attribute (default recall/ndcg @10, @20)")
    p.add_argument("--beams", type=int, default=20, help="beams of the constrained beam search")
    p.add_argument("--batch-size", type=int, default=256, help="users per beam-search batch")
    p.add_argument("--max-users", type=int, default=None, help="evaluate the first N users only")
    p.add_argument("--out", type=Path, default=None, help="output folder (default RUN)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.analysis.shapley import DEFAULT_METRICS, RESULT_MD, modality_contribution

    modality_contribution(
        args.run, data=args.data, split=args.split, metrics=args.metrics or DEFAULT_METRICS, num_beams=args.beams,
        batch_size=args.batch_size, max_users=args.max_users, out_dir=args.out,
    )
    out = args.out or Path(args.run)
    print((out / RESULT_MD).read_text(), end="")
    print(f"wrote {out / 'shapley.json'} and {out / RESULT_MD}")
    return 0
