"""Cosine decay and the one-cycle schedules (Smith and Topin's super-convergence)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from torchopt_lite.schedule._checks import check_real, check_steps
from torchopt_lite.schedule._count import as_float
from torchopt_lite.schedule.piecewise import piecewise_interpolate_schedule
from torchopt_lite.typing import Schedule


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    r"""Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps`` steps.

    .. math::
        c(t) = \tfrac12 \Bigl(1 + \cos\frac{\pi \min(t, T)}{T}\Bigr), \qquad
        \alpha(t) = \alpha_0 \bigl((1 - a)\, c(t)^p + a\bigr)

    Args:
        init_value: :math:`\alpha_0`.
        decay_steps: :math:`T > 0`; the value stays at :math:`a \alpha_0` after it.
        alpha: :math:`a`, the final value as a fraction of ``init_value``.
        exponent: :math:`p`.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = cosine_decay_schedule(1.0, decay_steps=4)
        >>> [round(float(s(t)), 6) for t in range(6)]
        [1.0, 0.853553, 0.5, 0.146447, 0.0, 0.0]

    References:
        Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
        ICLR 2017.
    """
    caller = "cosine_decay_schedule"
    init = check_real(caller, "init_value", init_value)
    steps = check_steps(caller, "decay_steps", decay_steps, 1)
    a = check_real(caller, "alpha", alpha)
    p = check_real(caller, "exponent", exponent)

    def schedule(count: Any) -> Tensor:
        t = torch.clamp(as_float(count), max=steps)
        decay = 0.5 * (1 + torch.cos(math.pi * t / steps))
        return init * ((1 - a) * decay**p + a)

    return schedule


def _check_onecycle(
    caller: str, transition_steps: int, peak_value: float, div_factor: float, final: float
) -> None:
    check_steps(caller, "transition_steps", transition_steps, 1)
    check_real(caller, "peak_value", peak_value)
    for name, value in (("div_factor", div_factor), ("final_div_factor", final)):
        if check_real(caller, name, value) <= 0:
            raise ValueError(f"{caller}: {name} must be > 0, got {value}.")


def _check_fraction(caller: str, name: str, value: float, low: float) -> None:
    if not low <= check_real(caller, name, value) <= 1:
        raise ValueError(f"{caller}: {name} must be in [{low}, 1], got {value}.")


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""One cycle, linearly: up to the peak, back down, then annealed to a tiny value.

    With :math:`T` = ``transition_steps`` and :math:`\hat\alpha` = ``peak_value``, the
    piecewise-linear schedule (:func:`piecewise_interpolate_schedule`) through

    .. math::
        \bigl(0,\ \hat\alpha / d\bigr) \to \bigl(\lfloor s T \rfloor,\ \hat\alpha\bigr) \to
        \bigl(\lfloor f T \rfloor,\ \hat\alpha / d\bigr) \to
        \bigl(T,\ \hat\alpha / (d\, d_f)\bigr)

    with :math:`s` = ``pct_start``, :math:`f` = ``pct_final``, :math:`d` = ``div_factor``,
    :math:`d_f` = ``final_div_factor`` (the first segment starts at :math:`t = -1`, as in Optax).

    Args:
        transition_steps: :math:`T > 0`.
        peak_value: :math:`\hat\alpha`.
        pct_start: :math:`s \in [0, 1]`, the fraction of steps spent increasing.
        pct_final: :math:`f \in [s, 1]`, the fraction of steps at which the decrease ends.
        div_factor: :math:`d > 0`.
        final_div_factor: :math:`d_f > 0`.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = linear_onecycle_schedule(10, 1.0, pct_start=0.5, div_factor=2.0)
        >>> [round(float(s(t)), 4) for t in (0, 5, 8, 10)]
        [0.5, 1.0, 0.5, 0.0001]

    References:
        Smith and Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
        Learning Rates", 2017.
    """
    caller = "linear_onecycle_schedule"
    _check_onecycle(caller, transition_steps, peak_value, div_factor, final_div_factor)
    _check_fraction(caller, "pct_start", pct_start, 0.0)
    _check_fraction(caller, "pct_final", pct_final, pct_start)
    return piecewise_interpolate_schedule(
        "linear",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""One cycle with cosine segments: up to the peak, then annealed to a tiny value.

    With :math:`T` = ``transition_steps`` and :math:`\hat\alpha` = ``peak_value``, the
    piecewise-cosine schedule (:func:`piecewise_interpolate_schedule`) through

    .. math::
        \bigl(0,\ \hat\alpha / d\bigr) \to \bigl(\lfloor s T \rfloor,\ \hat\alpha\bigr) \to
        \bigl(T,\ \hat\alpha / (d\, d_f)\bigr)

    with :math:`s` = ``pct_start``, :math:`d` = ``div_factor``, :math:`d_f` =
    ``final_div_factor`` (the first segment starts at :math:`t = -1`, as in Optax).

    Args:
        transition_steps: :math:`T > 0`.
        peak_value: :math:`\hat\alpha`.
        pct_start: :math:`s \in [0, 1]`, the fraction of steps spent increasing.
        div_factor: :math:`d > 0`.
        final_div_factor: :math:`d_f > 0`.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = cosine_onecycle_schedule(10, 1.0, pct_start=0.5, div_factor=2.0)
        >>> [round(float(s(t)), 4) for t in (4, 5, 10)]
        [0.9523, 1.0, 0.0001]

    References:
        Smith and Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
        Learning Rates", 2017.
    """
    caller = "cosine_onecycle_schedule"
    _check_onecycle(caller, transition_steps, peak_value, div_factor, final_div_factor)
    _check_fraction(caller, "pct_start", pct_start, 0.0)
    return piecewise_interpolate_schedule(
        "cos",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            transition_steps: 1.0 / (div_factor * final_div_factor),
        },
    )
