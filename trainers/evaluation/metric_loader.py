"""Offline access to the ``genrec_ranking`` metric through the ``evaluate`` library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RANKING_METRIC_PATH = Path(__file__).with_name("genrec_ranking.py")


def load_ranking_metric(**kwargs: Any):
    """``evaluate.load`` of genrec's ranking metric from the installed package (no network)."""
    import evaluate

    return evaluate.load(str(RANKING_METRIC_PATH), **kwargs)
