"""Constant and piecewise schedules: a value per interval of steps, or interpolated between."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from torchopt_lite.schedule._checks import check_boundaries_and_scales, check_real
from torchopt_lite.schedule._count import as_float
from torchopt_lite.typing import Schedule


def constant_schedule(value: float) -> Schedule:
    r"""The constant schedule :math:`\alpha(t) = v`.

    Args:
        value: :math:`v`.

    Returns:
        A function of the step count returning a float64 tensor shaped like the count.

    Example:
        >>> constant_schedule(0.1)(torch.tensor(7))
        tensor(0.1000, dtype=torch.float64)
    """
    v = check_real("constant_schedule", "value", value)

    def schedule(count: Any) -> Tensor:
        return torch.full_like(as_float(count), v)

    return schedule


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: Mapping[int, float] | None = None
) -> Schedule:
    r"""A value multiplied by a scale at each boundary it passes (Optax's argument).

    With boundaries :math:`b_1 < \dots < b_k` and scales :math:`s_i \ge 0`,

    .. math::
        \alpha(t) = \alpha_0 \prod_{i:\, t \ge b_i} s_i .

    Args:
        init_value: :math:`\alpha_0`.
        boundaries_and_scales: a dict ``{b_i: s_i}`` of non-negative int steps to non-negative
            scales; ``None`` gives the constant ``init_value``.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.1})
        >>> [round(float(s(t)), 6) for t in range(6)]
        [1.0, 1.0, 0.5, 0.5, 0.05, 0.05]
    """
    caller = "piecewise_constant_schedule"
    init = check_real(caller, "init_value", init_value)
    pairs = check_boundaries_and_scales(caller, boundaries_and_scales)

    def schedule(count: Any) -> Tensor:
        t = as_float(count)
        value = torch.full_like(t, init)
        for boundary, scale in pairs:
            value = torch.where(t < boundary, value, value * scale)
        return value

    return schedule


def _linear(start: float, end: float, pct: Tensor) -> Tensor:
    return start + (end - start) * pct


def _cos(start: float, end: float, pct: Tensor) -> Tensor:
    return end + (start - end) / 2 * (torch.cos(math.pi * pct) + 1)


_INTERPOLATIONS = {"linear": _linear, "cosine": _cos, "cos": _cos}  # "cos": older Optax


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: float,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    r"""Interpolate between the values :math:`v_i` reached at boundaries :math:`b_i`.

    With :math:`b_0 = 0`, :math:`v_0 = \alpha_0` and :math:`v_i = v_{i-1} s_i` (the scales
    accumulate), on :math:`b_{i-1} \le t < b_i`

    .. math::
        p = \frac{t - b_{i-1}}{\max(b_i - b_{i-1}, 1)}, \qquad
        \alpha(t) = \begin{cases}
            v_{i-1} + (v_i - v_{i-1})\, p & \text{linear} \\
            v_i + \tfrac12 (v_{i-1} - v_i)(\cos(\pi p) + 1) & \text{cosine}
        \end{cases}

    and :math:`\alpha(t) = v_k` for :math:`t \ge b_k` (Optax's formula).

    Args:
        interpolate_type: ``"linear"`` or ``"cosine"`` (``"cos"``, older Optax's name, too).
        init_value: :math:`\alpha_0`.
        boundaries_and_scales: a dict ``{b_i: s_i}`` of non-negative int steps to non-negative
            scales; ``None`` gives the constant ``init_value``.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = piecewise_interpolate_schedule("linear", 1.0, {4: 3.0})
        >>> [float(s(t)) for t in range(6)]
        [1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    """
    caller = "piecewise_interpolate_schedule"
    if interpolate_type not in _INTERPOLATIONS:
        raise ValueError(
            f"{caller}: interpolate_type must be 'linear' or 'cosine'; got {interpolate_type!r}."
        )
    interpolate = _INTERPOLATIONS[interpolate_type]
    init = check_real(caller, "init_value", init_value)
    pairs = check_boundaries_and_scales(caller, boundaries_and_scales)
    bounds = [0] + [b for b, _ in pairs]
    values = [init]
    for _, scale in pairs:
        values.append(values[-1] * scale)

    def schedule(count: Any) -> Tensor:
        t = as_float(count)
        value = torch.where(t >= bounds[-1], torch.full_like(t, values[-1]), torch.zeros_like(t))
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            inside = (t >= lo) & (t < hi)
            pct = (t - lo) / max(hi - lo, 1)
            value = value + torch.where(inside, interpolate(values[i], values[i + 1], pct), 0.0)
        return value

    return schedule
