"""The ``genrec`` verbs, one module each (``add_parser(sub)`` declares the flags, ``run(args)`` calls one function
of :mod:`genrec.trainers.jobs` and prints what it returns), and what they share: the help formatter and the
argument types that only parse. The parser and the error handling are :mod:`genrec.cli`."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["DATA_SOURCES", "HelpFormatter", "add_training_flags", "json_object"]

#: The raw-input kinds of ``genrec prepare`` (and ``genrec run --source``).
DATA_SOURCES = ("ml-100k", "s3rec", "amazon2014", "amazon2023", "hub")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps hand-made line breaks in descriptions and shows defaults."""


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
    """The flags every training verb has alike: precision, seed, restart, the dataset's revision."""
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--restart", action="store_true", help="delete checkpoints in OUT and start over")
    parser.add_argument("--data-revision", default=None, help="branch, tag or commit of a Hub --data")
