"""Checks of the settings shared by the configs, losses and arguments (numbers, fractions, MAGMA's block indices),
each raising a ``ValueError`` that names the setting, and the naming of a damaged weights file."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, Literal

from safetensors import SafetensorError


def _label(name: str) -> str:
    """A setting's name as errors show it: in backticks when it is an identifier, as is otherwise (``--option``,
    ``"metric 'acc'"``)."""
    return f"`{name}`" if name.isidentifier() else name


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
        label = _label(name)
        qualifier = f"{sign} " if sign is not None else ""
        raise ValueError(f"{label} must be a finite {qualifier}{'integer' if integer else 'number'}, got {value!r}")
    return value


def _is_fraction(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Real) and 0 < value <= 1


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float if it is a fraction in (0, 1] (of the labels, of the data...)."""
    if not _is_fraction(value):
        label = _label(name)
        raise ValueError(f"{label} must be a fraction in (0, 1], got {value!r}")
    return float(value)


def check_fractions(name: str, values: Any) -> list[float]:
    """``values`` as floats if they are a non-empty sequence of fractions in (0, 1]."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values or not all(
        _is_fraction(v) for v in values
    ):
        label = _label(name)
        raise ValueError(f"{label} must be one or more fractions in (0, 1], got {values!r}")
    return [float(v) for v in values]


def check_non_negative(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite non-negative number (a loss weight, a schedule length...)."""
    return float(check_number(name, value))


def check_layer_choice(
    reference_layers: Sequence[int],
    target_layer: int,
    num_layers: int | None = None,
    *,
    names: tuple[str, str] = ("reference_layers", "target_layer"),
) -> tuple[list[int], int]:
    """MAGMA's reference blocks and target block as ``(list, int)`` if they are distinct 0-based block indices
    (below ``num_layers`` when it is known); ``names`` are the settings shown in the errors."""
    reference_name, target_name = names
    refs = list(reference_layers) if isinstance(reference_layers, (list, tuple)) else None
    if not refs:
        raise ValueError(
            f"`{reference_name}` must name at least one layer (a non-empty list of block indices), "
            f"got {reference_layers!r}"
        )
    for name, index in [*((reference_name, r) for r in refs), (target_name, target_layer)]:
        if isinstance(index, bool) or not isinstance(index, Integral):
            raise ValueError(f"`{name}` must hold integer block indices, got {index!r}")
        if index < 0 or (num_layers is not None and index >= num_layers):
            bound = f" in [0, {num_layers - 1}] (num_hidden_layers={num_layers})" if num_layers is not None else ""
            raise ValueError(f"`{name}` index {index} is out of range: block indices are 0-based{bound}")
    if target_layer in refs:
        raise ValueError(f"`{reference_name}` {refs} must not contain `{target_name}` ({target_layer})")
    return [int(r) for r in refs], int(target_layer)


@contextmanager
def named_weights_errors(source: str | os.PathLike, option: str | None = None) -> Iterator[None]:
    """Re-raise a damaged weights file met while loading ``source`` (safetensors' error names no file) as a
    ``ValueError`` that names the checkpoint, the option it came from (e.g. ``"--model_name_or_path"``) and what
    to do."""
    try:
        yield
    except SafetensorError as error:
        raise ValueError(
            f"Cannot read the weights of {option + ' ' if option else ''}{os.fspath(source)} (SafetensorError: "
            f"{error}): its model.safetensors is damaged, e.g. cut short by a copy, a download or a run killed while "
            "saving. Use another checkpoint, or copy or download this one again."
        ) from error
