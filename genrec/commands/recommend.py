"""``genrec recommend``: top-k next items for one history (any family).

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.recommend` and prints.
"""

from __future__ import annotations

import argparse

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recommend",
        formatter_class=HelpFormatter,
        help="top-k next items for one history",
        description="""Recommend the next items for a history of item ids (oldest first) with a trained model.

Reads:  --model (UNGER run folder / best/ / Hub id, or a TTDS folder / Hub id), --history item ids.
Writes: stdout (one "item_id<TAB>score" line per recommendation, best first; --json for JSON).
Time:   well under a second per history on CPU.""",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--history", required=True, nargs="+", help="item ids, oldest first")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--beams", type=int, default=None, help="default: k")
    p.add_argument("--on-unknown", choices=("raise", "skip"), default="raise",
                   help="history item ids the model does not know: stop with an error, or leave them out "
                        "(a history with no known item left gets no recommendations)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--revision", default=None, help="branch, tag or commit of a Hub --model")
    p.add_argument("--transition-weight", type=float, default=None,
                   help="w of the transition prior mixture (1 - w) p_model + w p_transition; default: the "
                        "model's own (a `genrec run` folder carries the weight chosen on validation); 0: the "
                        "model alone")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import recommend

    print(recommend(
        args.model, args.history, k=args.k, num_beams=args.beams, on_unknown=args.on_unknown, as_json=args.json,
        revision=args.revision, transition_weight=args.transition_weight,
    ))
    return 0
