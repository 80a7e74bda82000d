"""The ``genrec`` verbs, one module each (``add_parser(sub)`` declares the flags, ``run(args)`` calls one function
of :mod:`genrec.trainers.jobs` and prints what it returns), and what they share: the help formatter and the
argument types that only parse. The parser and the error handling are :mod:`genrec.cli`."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["DATA_SOURCES", "HelpFormatter", "add_report_to_flag", "add_training_flags", "json_object"]

#: The raw-input kinds of ``genrec prepare`` (and ``genrec run --source``).
DATA_SOURCES = ("ml-100k", "s3rec", "amazon2014", "amazon2023", "hub")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps hand-made line breaks in descriptions and shows each option's default once, where it says something.

    ``argparse.ArgumentDefaultsHelpFormatter`` appends ``(default: X)`` to every help text, which printed
    ``(default: inferred) (default: None)`` where a text already names its default and ``(default: False)``
    after every switch. Here the default is appended only when the help text does not mention a default itself
    and the default is a value worth showing: not ``None``, not ``SUPPRESS``, not an empty list or dict, and
    not the unset state of a switch (``store_true`` / ``store_false`` / ``store_const`` / ``count``).
    """

    _SWITCHES = (
        argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
        argparse._AppendConstAction, argparse._CountAction, argparse._VersionAction, argparse._HelpAction,
    )

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if (
            "default" in help_text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(action, self._SWITCHES)
            or (isinstance(default, list | tuple | dict | set) and not default)
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return help_text
        if isinstance(default, list | tuple):  # nargs="+" lists: shown as they are typed, "1 5 10 20"
            shown = " ".join(str(value) for value in default).replace("%", "%%")
            return f"{help_text} (default: {shown})"
        return f"{help_text} (default: %(default)s)"


def json_object(text: str) -> dict[str, Any]:
    """A ``--config '{...}'`` value: a JSON object (never evaluated as code)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every training verb has alike: precision, seed, restart, the dataset's revision, where logs go."""
    parser.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
        help="training precision on a GPU (bf16 on Ampere or newer; fp16 needs CUDA, else full precision)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of the initialisation and the data order")
    parser.add_argument("--restart", action="store_true", help="delete checkpoints in OUT and start over")
    parser.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
    add_report_to_flag(parser)


def add_report_to_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--report-to``: where training logs go, Accelerate's ``log_with`` (checked by the job, before it trains).

    Only parsed here (the names are checked against the installed trackers by
    :func:`genrec.trainers.engine.accelerator.resolve_log_with`, which needs accelerate, before anything trains).
    """
    parser.add_argument(
        "--report-to", default="auto", metavar="TRACKERS",
        help="where training logs go (OUT/.../logs): a comma list of Accelerate trackers (tensorboard, wandb, "
             "mlflow, comet_ml, ...; each must be installed), all (every installed one) or none; auto: "
             "tensorboard when it is installed, else none. Changes no result: stages are reused across it",
    )
