"""`genrec VERB --help` on every verb: each flag says what it does, and its default is shown once or not at all.

The first thing a new user reads is `--help`; it used to print ``(default: inferred) (default: None)`` where a
text already named its default, ``(default: None)`` after texts that had nothing to add, and bare flags
(``--seed``, ``--max-history``) without a word. These checks walk every verb's parser, so a flag added later
without a help text, or with a doubled default, fails here.
"""

from __future__ import annotations

import argparse
import re

import pytest

from genrec.cli import build_parser
from genrec.commands import HelpFormatter


def _verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(sub.choices)


VERBS = sorted(_verbs())


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument a user can give (options and positionals), without argparse's own --help."""
    return [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


@pytest.mark.parametrize("verb", VERBS)
def test_every_argument_has_a_help_text(verb: str) -> None:
    bare = [_name(action) for action in _arguments(_verbs()[verb]) if not (action.help or "").strip()]
    assert not bare, f"`genrec {verb} --help`: no help text for {bare}"


@pytest.mark.parametrize("verb", VERBS)
def test_no_help_line_shows_a_default_of_none(verb: str) -> None:
    text = _verbs()[verb].format_help()
    assert "(default: None)" not in text
    assert "(default: False)" not in text  # a switch's unset state says nothing
    assert "(default: [])" not in text and "(default: {})" not in text


@pytest.mark.parametrize("verb", VERBS)
def test_no_help_mentions_its_default_twice(verb: str) -> None:
    parser = _verbs()[verb]
    formatter = parser._get_formatter()
    assert isinstance(formatter, HelpFormatter), f"`genrec {verb}` does not use genrec's HelpFormatter"
    for action in _arguments(parser):
        # the help string as the formatter builds it, before %(default)s is filled in (a default *value* may
        # itself be the word "default", e.g. --profile default)
        text = formatter._get_help_string(action).replace("%(default)s", "X")
        mentions = len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE))
        assert mentions <= 1, f"`genrec {verb} {_name(action)}` names its default {mentions} times: {text!r}"


def test_defaults_are_shown_where_the_text_does_not_say_them() -> None:
    """The formatter still shows a real default (the reason it exists), as the user would type it."""
    verbs = _verbs()
    run_help = " ".join(verbs["run"].format_help().split())
    assert "most recent history items kept per example (default: 20)" in run_help
    assert "(default: 2024)" in run_help
    assert "how to read --dataset (default: inferred)" in run_help  # its own wording, nothing appended
    assert "cut-offs (default: 1 5 10 20)" in " ".join(verbs["evaluate"].format_help().split())
