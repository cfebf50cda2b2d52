"""Schedules run one after another: ``join_schedules`` and SGDR's warm restarts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from torchopt_lite.schedule._checks import check_steps
from torchopt_lite.schedule._count import as_float
from torchopt_lite.typing import Schedule


def _as_value(value: Any, count: Tensor) -> Tensor:
    """A schedule's output as a float64 tensor shaped like the count (some return floats)."""
    if isinstance(value, Tensor):
        return value.to(torch.float64)
    return torch.full_like(as_float(count), value)


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[i]`` from ``boundaries[i-1]`` on, each counting from its own start.

    With boundaries :math:`b_1, \dots, b_k` and schedules :math:`f_0, \dots, f_k`,

    .. math::
        \alpha(t) = f_i(t - b_i) \quad \text{for the last } i \text{ with } t \ge b_i
        \qquad (b_0 = 0)

    Args:
        schedules: :math:`k + 1` schedules.
        boundaries: :math:`k` int steps at which the next schedule takes over.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> from torchopt_lite.schedule import constant_schedule, linear_schedule
        >>> s = join_schedules([linear_schedule(0.0, 1.0, 2), constant_schedule(0.5)], [2])
        >>> [float(s(t)) for t in range(4)]
        [0.0, 0.5, 0.5, 0.5]
    """
    caller = "join_schedules"
    schedules = list(schedules)
    if not schedules or not all(callable(s) for s in schedules):
        raise TypeError(f"{caller}: schedules must be a non-empty sequence of callables.")
    bounds = [check_steps(caller, "each of boundaries", b, 0) for b in boundaries]
    if len(bounds) != len(schedules) - 1:
        raise ValueError(
            f"{caller}: boundaries needs len(schedules) - 1 = {len(schedules) - 1} entries, "
            f"got {len(bounds)}."
        )

    def schedule(count: Any) -> Tensor:
        t = torch.as_tensor(count)
        value = _as_value(schedules[0](t), t)
        for boundary, later in zip(bounds, schedules[1:], strict=True):
            value = torch.where(t < boundary, value, _as_value(later(t - boundary), t))
        return value

    return schedule


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    r"""SGDR: warm-restarted cosine decays, one :func:`warmup_cosine_decay_schedule` per cycle.

    Cycle :math:`j` takes ``warmup_cosine_decay_schedule(**cosine_kwargs[j])`` and lasts its
    ``decay_steps`` :math:`D_j`; the cycles are joined with :func:`join_schedules` at
    :math:`b_j = D_1 + \dots + D_j`:

    .. math::
        \alpha(t) = w_j(t - b_{j-1}) \quad \text{for } b_{j-1} \le t < b_j

    (the last cycle continues past its end).

    Args:
        cosine_kwargs: the keyword arguments of each cycle's
            :func:`warmup_cosine_decay_schedule`, each with a ``decay_steps``.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=1, decay_steps=3)
        >>> s = sgdr_schedule([cycle, cycle])
        >>> [float(s(t)) for t in range(7)]
        [0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.0]

    References:
        Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
        ICLR 2017.
    """
    from torchopt_lite.schedule.warmup import warmup_cosine_decay_schedule

    caller = "sgdr_schedule"
    cycles = list(cosine_kwargs)
    if not cycles:
        raise ValueError(f"{caller}: cosine_kwargs must hold at least one cycle.")
    schedules: list[Callable[[Any], Any]] = []
    boundaries: list[int] = []
    step = 0
    for kwargs in cycles:
        if not isinstance(kwargs, Mapping) or "decay_steps" not in kwargs:
            raise TypeError(f"{caller}: each of cosine_kwargs must be a dict with decay_steps.")
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += check_steps(caller, "decay_steps", kwargs["decay_steps"], 1)
        boundaries.append(step)
    return join_schedules(schedules, boundaries[:-1])


sgdr = sgdr_schedule
