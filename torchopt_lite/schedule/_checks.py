"""Argument checks shared by the schedules: fail at construction, naming the argument."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any


def check_real(caller: str, name: str, value: Any) -> float:
    """``value`` as a finite float, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{caller}: {name} must be a real number, got {type(value).__name__}.")
    if not math.isfinite(value):
        raise ValueError(f"{caller}: {name} must be finite, got {value}.")
    return float(value)


def check_steps(caller: str, name: str, value: Any, minimum: int | None) -> int:
    """``value`` as an int (at least ``minimum`` if given), or a TypeError/ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{caller}: {name} must be an int, got {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{caller}: {name} must be >= {minimum}, got {value}.")
    return int(value)


def check_boundaries_and_scales(
    caller: str, boundaries_and_scales: Mapping[int, float] | None
) -> list[tuple[int, float]]:
    """Optax's ``{boundary: scale}`` as sorted pairs (non-negative int steps, scales >= 0)."""
    if boundaries_and_scales is None:
        return []
    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            f"{caller}: boundaries_and_scales must be a dict of step -> scale, "
            f"got {type(boundaries_and_scales).__name__}."
        )
    pairs = []
    for boundary, scale in boundaries_and_scales.items():
        b = check_steps(caller, "each boundary of boundaries_and_scales", boundary, 0)
        s = check_real(caller, "each scale of boundaries_and_scales", scale)
        if s < 0:
            raise ValueError(f"{caller}: boundaries_and_scales needs scales >= 0, got {s}.")
        pairs.append((b, s))
    return sorted(pairs)
