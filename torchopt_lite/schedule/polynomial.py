"""Polynomial and linear schedules."""

from __future__ import annotations

import logging
from typing import Any

import torch

from torchopt_lite.schedule._count import as_float
from torchopt_lite.typing import Schedule

logger = logging.getLogger(__name__)


def polynomial_schedule(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""Polynomial decay from ``init_value`` to ``end_value`` over ``transition_steps`` steps.

    .. math::
        \alpha(t) = (\alpha_0 - \alpha_1)\Bigl(1 - \frac{\min(\max(t - t_0, 0), T)}{T}\Bigr)^p
        + \alpha_1

    Args:
        init_value: :math:`\alpha_0`.
        end_value: :math:`\alpha_1`.
        power: :math:`p`.
        transition_steps: :math:`T`; if not positive the schedule is constant ``init_value``.
        transition_begin: :math:`t_0`, steps before the decay starts.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
        >>> float(s(5))
        0.25
    """
    if transition_steps <= 0:
        logger.info("polynomial_schedule: transition_steps <= 0, so the schedule is constant.")
        return lambda count: init_value
    if transition_begin < 0:
        logger.info("polynomial_schedule: transition_begin < 0 is treated as 0.")
        transition_begin = 0

    def schedule(count: Any) -> Any:
        t = torch.clamp(as_float(count) - transition_begin, 0, transition_steps)
        frac = 1.0 - t / transition_steps
        return (init_value - end_value) * frac**power + end_value

    return schedule


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` (``polynomial_schedule`` p=1).

    Example:
        >>> float(linear_schedule(1.0, 0.0, transition_steps=4)(1))
        0.75
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)
