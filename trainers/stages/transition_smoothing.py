"""The transition prior's smoothing setting: what a profile or ``--smoothing`` may say, and the c it searches.

Kept apart from :mod:`genrec.trainers.stages.transition_prior` (which needs torch) so that a profile and the
command line can check the setting before anything is trained. docs/quality.md ("The transition prior") has
the measurements behind the grid.
"""

from __future__ import annotations

import math

__all__ = ["TRANSITION_SMOOTHINGS", "parse_transition_smoothing", "smoothing_candidates"]

# The additive smoothing c of p_transition = count / (n(last) + c) searched when a profile (the default's
# ``transition_smoothing="auto"``) or ``genrec transition-prior --smoothing auto`` asks for it; measured on
# Beauty and ML-100K.
TRANSITION_SMOOTHINGS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def parse_transition_smoothing(setting: str | float) -> str | float:
    """``setting`` as a profile records it: ``"auto"``, or a finite number c >= 0 (a float); ``ValueError``
    otherwise."""
    if setting == "auto":
        return "auto"
    if isinstance(setting, bool):
        raise ValueError(f"smoothing must be 'auto' or a finite number >= 0, got {setting!r}")
    try:
        c = float(setting)
    except (TypeError, ValueError):
        raise ValueError(f"smoothing must be 'auto' or a finite number >= 0, got {setting!r}") from None
    if not (math.isfinite(c) and c >= 0):
        raise ValueError(f"smoothing must be 'auto' or a finite number >= 0, got {setting!r}")
    return c


def smoothing_candidates(setting: str | float | None) -> tuple[float, ...]:
    """The c searched for a smoothing setting: ``"auto"`` -> :data:`TRANSITION_SMOOTHINGS` (0 among them, so
    the plain prior stays a candidate), a number c >= 0 -> ``(c,)``, None -> ``(0.0,)`` (a profile recorded
    before the setting existed: the plain prior)."""
    if setting is None:
        return (0.0,)
    parsed = parse_transition_smoothing(setting)
    return TRANSITION_SMOOTHINGS if parsed == "auto" else (float(parsed),)
