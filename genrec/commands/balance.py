"""``genrec balance``: the modality balance of fused item embeddings.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.analysis.modality_balance.modality_balance_of_files` and prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "balance",
        formatter_class=HelpFormatter,
        help="modality balance of fused item embeddings (UNGER §4.3)",
        description="""How much of the fused embeddings' neighbourhood structure comes from the semantic vs the
collaborative embeddings (relative similarity from KL divergences between similarity distributions).

Reads:  --fused, --semantic, --collaborative (.safetensors ItemEmbeddings; rows matched by item id).
Writes: stdout (JSON); --plot PNG (2-D projection of the three sets, k-means colours; needs matplotlib).
Time:   seconds (2,000 sampled items).""",
    )
    p.add_argument("--fused", required=True, type=Path, help="fused item embeddings (e.g. Stage I's integrated ones)")
    p.add_argument("--semantic", required=True, type=Path, help="semantic (text) item embeddings")
    p.add_argument("--collaborative", required=True, type=Path, help="collaborative (item id) item embeddings")
    p.add_argument("--sample", type=int, default=2000, help="items compared (a seeded sample of the rows)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the item sample and the plot")
    p.add_argument("--plot", type=Path, default=None, help="write the figure to this PNG")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.analysis.modality_balance import modality_balance_of_files

    balance = modality_balance_of_files(
        args.fused, args.semantic, args.collaborative, sample=args.sample, seed=args.seed, plot=args.plot
    )
    print(json.dumps(balance, indent=2))
    return 0
