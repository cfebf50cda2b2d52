"""Hyperparameter validation at construction time (fail before step 1, not at step 1000)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _value(x: Any) -> float | None:
    """``x`` as a number to compare (``None``: not a number or a one-element tensor); a tensor
    that cannot be read for free (see :func:`_readable`) reads as :data:`_UNREAD`."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            return None
        return float(x.detach()) if _readable(x) else _UNREAD
    if isinstance(x, int | float):
        return float(x)
    return None


_UNREAD = float("nan")  # the value of an unread tensor: compared by identity, never by value


def _readable(x: Tensor) -> bool:
    """A tensor hyperparameter is checked where reading it is free: a constant on the CPU.

    On an accelerator (a host sync per step when an optimizer is rebuilt from injected
    hyperparameters), under ``torch.func`` transforms and under ``torch.compile``, its value is
    taken as given.
    """
    return (
        not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def known_value(x: Any) -> float | None:
    """``x`` as a float where reading it is free (a number, or a one-element tensor on the CPU
    outside ``vmap`` and ``torch.compile``); ``None`` where it is unknown (taken as given)."""
    v = _value(x)
    return None if v is None or v is _UNREAD else v


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
    if v is not _UNREAD and not v >= 0.0:
        label = what or name
        raise ValueError(f"{caller}: Invalid {label} value: {name} must be >= 0; got {value}.")


def check_in_range(
    caller: str, name: str, value: Any, low: float, high: float, *, closed_high: bool = False
) -> None:
    """Raise ``ValueError`` unless ``low <= value < high`` (``<= high`` if ``closed_high``)."""
    v = _value(value)
    if v is None:
        raise TypeError(f"{caller}: {name} must be a float; got {type(value).__name__}.")
    ok = v is _UNREAD or (low <= v <= high if closed_high else low <= v < high)
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"{caller}: {name} must be in [{low}, {high}{bracket}; got {value}.")


def check_betas(caller: str, betas: Any) -> tuple[float, float]:
    """Validate ``betas = (b1, b2)`` with each in ``[0, 1)``."""
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise TypeError(f"{caller}: betas must be a pair (beta1, beta2); got {betas!r}.")
    check_in_range(caller, "betas[0]", betas[0], 0.0, 1.0)
    check_in_range(caller, "betas[1]", betas[1], 0.0, 1.0)
    return coefficient(betas[0]), coefficient(betas[1])


def coefficient(x: Any) -> Any:
    """A hyperparameter for the formulas: a Python float, or a tensor kept as it is (injected,
    learnable or traced) so that the step stays differentiable in it and needs no host sync."""
    return x if isinstance(x, Tensor) else float(x)


def check_positive_value(caller: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value > 0`` (a float or a 0-d tensor)."""
    v = _value(value)
    if v is None:
        raise TypeError(
            f"{caller}: {name} must be a float or a 0-d tensor; got {type(value).__name__}."
        )
    if v is not _UNREAD and not v > 0.0:
        raise ValueError(f"{caller}: {name} must be > 0; got {value}.")


REAL_LEAVES_ONLY = (
    "{caller}: complex leaves are not supported ({why}); pass the real and imaginary parts as "
    "separate real leaves (torch.view_as_real gives them as a last dimension of size 2)."
)


def real_leaves_check(caller: str, why: str) -> Any:
    """A ``Leafwise`` state check that rejects complex leaves before anything is written (for
    shape-aware math that the real view of a complex leaf would get wrong)."""

    def check(facts: Any, state: Any) -> None:
        if facts.complex is not None:
            raise ValueError(REAL_LEAVES_ONLY.format(caller=caller, why=why))

    return check


def reject_complex_leaves(caller: str, why: str, leaves: Any) -> None:
    """Raise for complex ``leaves`` (in a stateless ``init``: the torch.optim-style
    ``Optimizer`` trusts the state it built and skips the per-step check above)."""
    if any(x.is_complex() for x in leaves):
        raise ValueError(REAL_LEAVES_ONLY.format(caller=caller, why=why))
