"""Checks of numeric settings shared by the configs, losses and arguments, each raising a ``ValueError`` that
names the setting."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Literal


def check_number(
    name: str,
    value: Any,
    *,
    sign: Literal["non-negative", "positive"] | None = "non-negative",
    integer: bool = False,
) -> Any:
    """``value`` if it is a finite real number (an integer with ``integer=True``) of the given ``sign``.

    Booleans are rejected. ``name`` is shown in backticks when it is an identifier (a setting), as is otherwise
    (e.g. ``"metric 'accuracy'"``). Returns ``value`` unchanged.
    """
    ok = not isinstance(value, bool) and isinstance(value, Integral if integer else Real) and math.isfinite(value)
    if ok and sign is not None:
        ok = value > 0 if sign == "positive" else value >= 0
    if not ok:
        label = f"`{name}`" if name.isidentifier() else name
        qualifier = f"{sign} " if sign is not None else ""
        raise ValueError(f"{label} must be a finite {qualifier}{'integer' if integer else 'number'}, got {value!r}")
    return value


def check_non_negative(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite non-negative number (a loss weight, a schedule length...)."""
    return float(check_number(name, value))
