"""Exponential decay schedule."""

from __future__ import annotations

import logging
from typing import Any

import torch

from torchopt_lite.schedule._count import as_float
from torchopt_lite.typing import Schedule

logger = logging.getLogger(__name__)


def exponential_decay(
    init_value: float,
    decay_rate: float,
    transition_begin: int = 0,
    transition_steps: int = 1,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    r"""Exponential decay: :math:`\alpha(t) = \alpha_0\, r^{\max(t - t_0, 0)/T}`.

    Args:
        init_value: :math:`\alpha_0`.
        decay_rate: :math:`r`; must not be 0.
        transition_begin: :math:`t_0`, steps before the decay starts.
        transition_steps: :math:`T > 0`.
        staircase: decay in discrete steps (the exponent is floored).
        end_value: a lower bound if :math:`r < 1`, an upper bound if :math:`r > 1`.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> float(exponential_decay(1.0, 0.5, transition_steps=2)(4))
        0.25

    Note:
        TorchOpt's argument order (``decay_rate`` second), which differs from Optax's
        ``exponential_decay(init_value, transition_steps, decay_rate, ...)``.
    """
    if transition_steps <= 0:
        logger.info("exponential_decay: transition_steps <= 0, so the schedule is constant.")
        return lambda count: init_value
    if decay_rate == 0:
        raise ValueError("exponential_decay: decay_rate must not be 0.")
    if transition_begin < 0:
        logger.info("exponential_decay: transition_begin < 0 is treated as 0.")
        transition_begin = 0

    def schedule(count: Any) -> Any:
        exponent = torch.clamp(as_float(count) - transition_begin, min=0) / transition_steps
        if staircase:
            exponent = torch.floor(exponent)
        value = init_value * torch.pow(torch.tensor(decay_rate, dtype=torch.float64), exponent)
        if end_value is not None:
            bound = torch.tensor(end_value, dtype=torch.float64)
            value = torch.maximum(value, bound) if decay_rate < 1 else torch.minimum(value, bound)
        return value

    return schedule
