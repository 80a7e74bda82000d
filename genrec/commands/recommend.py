"""``genrec recommend``: top-k next items for one history, or for every user of a dataset split (any family).

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.recommend` (``--history``) or
:func:`genrec.trainers.jobs.verbs.recommend_dataset` (``--data``: batch inference into a parquet file) and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        formatter_class=HelpFormatter,
        help="top-k next items for one history, or for every user of a split (batch inference)",
        description="""Recommend the next items with a trained model: for one history of item ids (oldest first),
or for every user (row) of a split of a prepared dataset (batch inference). A history's own items are left
out of its recommendations unless --no-exclude-history (docs/recommend.md).

Reads:  --model (UNGER run folder / best/ / Hub id, or a TTDS folder / Hub id); --history item ids, or --data
        (prepared dataset; each row of --split is a user whose history is the row without its last item,
        the target evaluation holds out).
Writes: --history: stdout (one "item_id<TAB>score" line per recommendation, best first; --json for JSON).
        --data: --out parquet (columns user, rank, item, score), written whole or not at all; an existing
        file is replaced. Under `accelerate launch` the users are split across the processes.
Time:   importing torch, transformers and genrec takes about 10 s on a CPU (8-13 s measured on a shared
        2-core machine), most of a one-history call; then about 50 ms per history at -k 10 on one CPU thread
        (an ML-100K default-size model with its transition prior; about 13 ms each in batches of 256), so
        batch inference of ML-100K's 943 test users takes about 20 s in all. Figures: docs/recommend.md.""",
    )
    p.add_argument("--model", required=True, help="model folder or Hub id (with its tokenizer)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--history", nargs="+", help="item ids, oldest first (one history)")
    source.add_argument("--data", help="prepared dataset folder or Hub id: recommend for every user of --split")
    p.add_argument("-k", type=int, default=10, help="items per history (at most the catalogue's size)")
    p.add_argument("--beams", type=int, default=None, help="beams of the constrained beam search (default: k)")
    p.add_argument("--exclude-history", action=argparse.BooleanOptionalAction, default=True,
                   help="leave the history's own items out of its recommendations (decoding enough beams that k "
                        "remain); --no-exclude-history keeps them, the ranking evaluation scores")
    p.add_argument("--on-unknown", choices=("raise", "skip"), default="raise",
                   help="history item ids the model does not know: stop with an error, or leave them out "
                        "(a history with no known item left gets no recommendations)")
    p.add_argument("--json", action="store_true", help="--history: print a JSON list instead of lines")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --model")
    p.add_argument("--transition-weight", type=float, default=None,
                   help="w of the transition prior mixture (1 - w) p_model + w p_transition; default: the "
                        "model's own (a `genrec run` folder carries the weight chosen on validation); 0: the "
                        "model alone")
    batch = p.add_argument_group("batch inference (--data)")
    batch.add_argument("--split", default="test", choices=("train", "validation", "test"),
                       help="split whose users (rows) get recommendations")
    batch.add_argument("--out", type=Path, default=None, help="the parquet file to write (needed with --data)")
    batch.add_argument("--batch-size", type=int, default=None,
                       help="users per beam-search batch (default: 256 for UNGER, 8 for TTDS)")
    batch.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import recommend, recommend_dataset

    if args.data is None:
        if args.out is not None:
            raise ValueError("--out is for batch inference (--data); --history prints to stdout")
        print(recommend(
            args.model, args.history, k=args.k, num_beams=args.beams, on_unknown=args.on_unknown, as_json=args.json,
            revision=args.revision, transition_weight=args.transition_weight, exclude_history=args.exclude_history,
        ))
        return 0
    if args.out is None:
        raise ValueError("--data writes a parquet file: give --out, e.g. --out topk.parquet")
    if args.json:
        raise ValueError("--json is for --history; --data writes the parquet file --out")
    print(recommend_dataset(
        args.model, args.data, args.out, split=args.split, k=args.k, num_beams=args.beams,
        batch_size=args.batch_size, on_unknown=args.on_unknown, revision=args.revision,
        data_revision=args.data_revision, transition_weight=args.transition_weight,
        exclude_history=args.exclude_history,
    ))
    return 0
