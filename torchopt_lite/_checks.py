"""Hyperparameter validation at construction time (fail before step 1, not at step 1000)."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def _value(x: Any) -> float | None:
    if isinstance(x, Tensor):
        if x.numel() != 1:
            return None
        return float(x.detach())
    if isinstance(x, int | float):
        return float(x)
    return None


def check_nonnegative(caller: str, name: str, value: Any, *, what: str = "") -> None:
    """Raise ``ValueError`` unless ``value >= 0`` (schedules are checked when called)."""
    if callable(value):
        return
    v = _value(value)
    if v is None:
        raise TypeError(
            f"{caller}: {name} must be a float, a 0-d tensor or a schedule; "
            f"got {type(value).__name__}."
        )
    if not v >= 0.0:
        label = what or name
        raise ValueError(f"{caller}: Invalid {label} value: {name} must be >= 0; got {value}.")


def check_in_range(
    caller: str, name: str, value: Any, low: float, high: float, *, closed_high: bool = False
) -> None:
    """Raise ``ValueError`` unless ``low <= value < high`` (``<= high`` if ``closed_high``)."""
    v = _value(value)
    if v is None:
        raise TypeError(f"{caller}: {name} must be a float; got {type(value).__name__}.")
    ok = low <= v <= high if closed_high else low <= v < high
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{caller}: {name} must be in [{low}, {high}{bracket}; got {value}.")


def check_betas(caller: str, betas: Any) -> tuple[float, float]:
    """Validate ``betas = (b1, b2)`` with each in ``[0, 1)``."""
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"{caller}: betas must be a pair (beta1, beta2); got {betas!r}.")
    check_in_range(caller, "betas[0]", betas[0], 0.0, 1.0)
    check_in_range(caller, "betas[1]", betas[1], 0.0, 1.0)
    return float(betas[0]), float(betas[1])
