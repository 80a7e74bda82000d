"""Strict type checks for config fields, with errors that name the field.

``int(4.5)`` is 4 and ``[int(k) for k in "4,5"]`` fails with "invalid literal for int() with base 10: ','":
the first silently builds another model than the config file says, the second does not say which field is
wrong. Configs therefore read their numeric and boolean fields through these helpers, which accept only
values of the right JSON type (an int for an int field, a number for a float field, a bool for a flag) and
raise ``ValueError("UngerConfig.num_attention_heads must be an int, got 4.5 (float)")`` otherwise.

Only the standard library is used, so ``modeling/`` stays importable as Hub remote code.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["as_bool", "as_float", "as_int", "as_int_list", "as_optional_int"]


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def as_int(owner: str, name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an int when it is one (bools and floats, even 4.0, are refused), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{owner}.{name} must be an int, got {_describe(value)}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {number}")
    return number


def as_optional_int(owner: str, name: str, value: Any, *, minimum: int | None = None) -> int | None:
    """None, or ``value`` checked by :func:`as_int`."""
    return None if value is None else as_int(owner, name, value, minimum=minimum)


def as_float(
    owner: str, name: str, value: Any, *, minimum: float | None = None, above: float | None = None
) -> float:
    """``value`` as a float when it is a real number (bools and strings refused); ``>= minimum``, ``> above``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}.{name} must be a number, got {_describe(value)}")
    number = float(value)
    if number != number:  # NaN
        raise ValueError(f"{owner}.{name} must be a number, got NaN")
    if minimum is not None and number < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {number}")
    if above is not None and number <= above:
        raise ValueError(f"{owner}.{name} must be > {above}, got {number}")
    return number


def as_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` when it is a bool (``"false"`` or 0 would otherwise read as True or pass unnoticed)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be true or false, got {_describe(value)}")
    return value


def as_int_list(
    owner: str, name: str, value: Any, *, length: int | None = None, minimum: int | None = None
) -> list[int]:
    """``value`` as a list of ints (a list or tuple of ints; a string such as "4,5" is refused)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{owner}.{name} must be a list of ints, got {_describe(value)}")
    numbers_ = [as_int(owner, f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value)]
    if length is not None and len(numbers_) != length:
        raise ValueError(f"{owner}.{name} must hold {length} ints, got {len(numbers_)}: {numbers_}")
    return numbers_
