"""The ``genrec`` verbs, one module each (``add_parser(sub)`` declares the flags, ``run(args)`` calls one function
of :mod:`genrec.trainers.jobs` and prints what it returns), and what they share: the help formatter and the
argument types that only parse. The parser and the error handling are :mod:`genrec.cli`."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["DATA_SOURCES", "HelpFormatter", "json_object"]

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
