"""The ``genrec`` command line: parsing, one module per verb, and how errors end.

Each verb lives in ``genrec/commands/<verb>.py``: ``add_parser(sub)`` declares its flags and ``run(args)`` calls one
function of :mod:`genrec.trainers.jobs` (the studies ``balance`` and ``shapley``: of
:mod:`genrec.trainers.analysis`) and prints what it returns. No logic lives in the CLI; heavy imports happen
inside ``run`` so that ``genrec --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from genrec._version import __version__
from genrec.cli_console import setup_console
from genrec.cli_errors import USER_ERROR_EXIT, one_line, user_error_types
from genrec.commands import (
    HelpFormatter,
    balance,
    embed,
    evaluate,
    finetune,
    prepare,
    push,
    quantize,
    recommend,
    run,
    shapley,
    stage1,
    train,
    transition_prior,
)

#: The verb modules, in the order ``genrec --help`` lists them.
VERB_MODULES = (
    run, prepare, embed, quantize, stage1, balance, train, evaluate, recommend,
    finetune, push, shapley, transition_prior,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``genrec`` argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="genrec",
        formatter_class=HelpFormatter,
        description="Generative recommendation with semantic IDs (UNGER, TTDS-style LLM recommenders).",
    )
    parser.add_argument("--version", action="version", version=f"genrec {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="debug logging, tracebacks of errors and the libraries' own progress bars",
    )
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for module in VERB_MODULES:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genrec`` console script.

    Bad input and environment faults (see :func:`genrec.cli_errors.user_error_types`) end in one line
    ``genrec VERB: error: ...`` and exit status 2; other exceptions are bugs and keep their traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    setup_console(verbose=args.verbose)
    completed = False
    try:
        status = int(args.handler(args) or 0)
        completed = True
        return status
    except user_error_types() as error:
        # Bad input or an environment fault: one clear line, no traceback (use -v for the traceback).
        # Anything else (KeyError, TypeError, ...) is a bug and keeps its traceback.
        if args.verbose:
            raise
        print(f"genrec {args.command}: error: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print(f"genrec {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        # under torchrun / accelerate launch: close the process group while the interpreter is alive (a
        # command that never imported torch has none, and the CLI stays light)
        if "torch" in sys.modules:
            from genrec.trainers.jobs.verbs import end_command

            end_command(completed=completed)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
