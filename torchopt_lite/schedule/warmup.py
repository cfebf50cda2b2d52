"""A linear warmup joined to a constant, cosine or exponential schedule."""

from __future__ import annotations

from torchopt_lite.schedule._checks import check_real, check_steps
from torchopt_lite.schedule.cosine import cosine_decay_schedule
from torchopt_lite.schedule.exponential_decay import exponential_decay
from torchopt_lite.schedule.join import join_schedules
from torchopt_lite.schedule.piecewise import constant_schedule
from torchopt_lite.schedule.polynomial import linear_schedule
from torchopt_lite.typing import Schedule


def _warmup(caller: str, init_value: float, peak_value: float, warmup_steps: int) -> Schedule:
    check_real(caller, "init_value", init_value)
    check_real(caller, "peak_value", peak_value)
    check_steps(caller, "warmup_steps", warmup_steps, 0)
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> Schedule:
    r"""Linear warmup from ``init_value`` to ``peak_value``, then constant.

    .. math::
        \alpha(t) = \alpha_0 + (\hat\alpha - \alpha_0) \min(t / W, 1)

    Args:
        init_value: :math:`\alpha_0`.
        peak_value: :math:`\hat\alpha`.
        warmup_steps: :math:`W \ge 0` (0: the constant ``init_value``, as in Optax).

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
        >>> [float(s(t)) for t in range(6)]
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    warmup = _warmup("warmup_constant_schedule", init_value, peak_value, warmup_steps)
    if warmup_steps == 0:  # as Optax: a linear schedule over no steps stays at init_value
        return constant_schedule(init_value)
    return warmup  # the linear schedule holds peak_value after W steps


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    r"""Linear warmup to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` :math:`D` counts the warmup too: the decay lasts :math:`D - W` steps.

    .. math::
        \alpha(t) = \begin{cases}
            \alpha_0 + (\hat\alpha - \alpha_0)\, t / W & t < W \\
            \alpha_1 + (\hat\alpha - \alpha_1)\, \Bigl(\tfrac12\bigl(1 + \cos
            \frac{\pi \min(t - W,\, D - W)}{D - W}\bigr)\Bigr)^p & t \ge W
        \end{cases}

    (:func:`cosine_decay_schedule` with :math:`a = \alpha_1 / \hat\alpha`, or 0 if
    :math:`\hat\alpha = 0`).

    Args:
        init_value: :math:`\alpha_0`.
        peak_value: :math:`\hat\alpha`.
        warmup_steps: :math:`W \ge 0`.
        decay_steps: :math:`D > W`, the total length of warmup and decay.
        end_value: :math:`\alpha_1`.
        exponent: :math:`p`.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=4)
        >>> [float(s(t)) for t in range(6)]
        [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    caller = "warmup_cosine_decay_schedule"
    warmup = _warmup(caller, init_value, peak_value, warmup_steps)
    check_steps(caller, "decay_steps", decay_steps, 1)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"{caller}: decay_steps (warmup included) must exceed warmup_steps, "
            f"got {decay_steps} <= {warmup_steps}."
        )
    end = check_real(caller, "end_value", end_value)
    alpha = 0.0 if peak_value == 0 else end / peak_value
    decay = cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)
    return join_schedules([warmup, decay], [warmup_steps])


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    r"""Linear warmup to ``peak_value``, then :func:`exponential_decay` from it.

    .. math::
        \alpha(t) = \begin{cases}
            \alpha_0 + (\hat\alpha - \alpha_0)\, t / W & t < W \\
            \hat\alpha\, r^{\max(t - W - t_0,\, 0) / T} & t \ge W
        \end{cases}

    (the exponent floored if ``staircase``, the value bounded by ``end_value``). Optax's
    argument order (``transition_steps`` before ``decay_rate``).

    Args:
        init_value: :math:`\alpha_0`.
        peak_value: :math:`\hat\alpha`.
        warmup_steps: :math:`W \ge 0`.
        transition_steps: :math:`T`; if not positive the decay is constant ``peak_value``.
        decay_rate: :math:`r \ne 0`.
        transition_begin: :math:`t_0`, steps after the warmup before the decay starts.
        staircase: decay in discrete steps (the exponent is floored).
        end_value: a lower bound if :math:`r < 1`, an upper bound if :math:`r > 1`.

    Returns:
        A function of the step count returning a float64 tensor.

    Example:
        >>> s = warmup_exponential_decay_schedule(0.0, 1.0, 2, transition_steps=1, decay_rate=0.5)
        >>> [float(s(t)) for t in range(5)]
        [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    caller = "warmup_exponential_decay_schedule"
    warmup = _warmup(caller, init_value, peak_value, warmup_steps)
    rate = check_real(caller, "decay_rate", decay_rate)
    if rate == 0:
        raise ValueError(f"{caller}: decay_rate must not be 0.")
    check_steps(caller, "transition_steps", transition_steps, None)
    check_steps(caller, "transition_begin", transition_begin, None)
    if end_value is not None:
        check_real(caller, "end_value", end_value)
    decay = exponential_decay(
        peak_value, rate, transition_begin, transition_steps, staircase, end_value
    )
    return join_schedules([warmup, decay], [warmup_steps])
