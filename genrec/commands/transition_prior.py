"""``genrec transition-prior``: the transition prior for a finished run folder.

``add_parser`` declares the flags; ``run`` calls :func:`genrec.trainers.jobs.verbs.transition_prior` and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genrec.commands import HelpFormatter


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transition-prior",
        formatter_class=HelpFormatter,
        help="give a finished run folder the transition prior (fit, choose w on validation, test)",
        description="""Mix the training rows' first-order transitions into a finished run's recommendations.

The generative model ranks rare but exact "bought together" pairs below a first-order Markov chain
(docs/quality.md); the mixture (1 - w) p_model + w p_transition keeps both. This fits the transition
counts on RUN/data's training rows, chooses w on validation (NDCG@10, the run's own validation sizes),
evaluates test with it, re-exports the model at RUN's root with the prior installed and updates
RUN/run.json (test_metrics = the mixture's, model_test_metrics = the model alone). Stage II is not
touched. `genrec run` does this itself for the default profile; this verb is for folders made before.

--smoothing auto also chooses the additive smoothing c of p_transition = count / (n(last) + c) on the same
validation users (c = 0, the plain prior, is a candidate): an item left only a few times in training then
pushes its successors less far up. On Beauty it chose c = 5 and raised test Recall@10 by 0.002 at level
NDCG@10 (paired, docs/quality.md "The transition prior"). Without --smoothing the run's profile decides:
auto for the default profile (since 2026-12-07), the plain prior for `long` and for older run folders.

Reads:  RUN (a finished `genrec run` folder, UNGER or MSCGRec).  Writes: RUN/transition_prior/, RUN's
        model (an MSCGRec run keeps its modality_tables/), RUN/run.json.
Time:   ML-100K under a minute; Beauty (22k test users) 10-20 CPU minutes.""",
    )
    p.add_argument("run", type=Path, help="a finished `genrec run` folder")
    p.add_argument("--smoothing", default=None, type=_smoothing,
                   help="additive smoothing c of the transition counts: a number >= 0, or auto (chosen on "
                        "validation with the weight, from 0, 0.5, 1, 2, 5, 10, 20); default: what the run's "
                        "profile says (auto since 2026-12-07, 0 for `long` and older run folders)")
    p.set_defaults(handler=run)


def _smoothing(value: str) -> str | float:
    from genrec.trainers.jobs.profiles import parse_transition_smoothing  # the profiles' own check

    try:
        return parse_transition_smoothing(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 0, got {value!r}") from None


def run(args: argparse.Namespace) -> int:
    from genrec.trainers.jobs.verbs import transition_prior

    print(transition_prior(args.run, smoothing=args.smoothing))
    return 0
