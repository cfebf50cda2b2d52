"""Schedules against their closed forms, and as learning rates (count before the increment)."""

from __future__ import annotations

import math

import pytest
import torch

import torchopt_lite
from torchopt_lite.schedule import exponential_decay, linear_schedule, polynomial_schedule

COUNTS = range(0, 25)


def _as_float(x: object) -> float:
    return float(x)  # schedules return float64 tensors (or the constant itself)


@pytest.mark.parametrize(
    ("init", "end", "power", "steps", "begin"),
    [(1.0, 0.0, 1.0, 10, 0), (0.5, 0.1, 2.0, 8, 3), (0.1, 1.0, 0.5, 12, 0), (2.0, 1.0, 3.0, 1, 5)],
)
def test_polynomial_schedule_closed_form(init, end, power, steps, begin) -> None:
    s = polynomial_schedule(init, end, power, steps, begin)
    for t in COUNTS:
        k = min(max(t - begin, 0), steps)
        expected = (init - end) * (1 - k / steps) ** power + end
        assert _as_float(s(t)) == pytest.approx(expected, rel=1e-14, abs=1e-15)
        assert _as_float(s(torch.tensor(t))) == pytest.approx(expected, rel=1e-14, abs=1e-15)


def test_linear_schedule_closed_form() -> None:
    s = linear_schedule(0.2, 0.05, transition_steps=6, transition_begin=2)
    for t in COUNTS:
        frac = min(max(t - 2, 0), 6) / 6
        assert _as_float(s(t)) == pytest.approx(0.2 + (0.05 - 0.2) * frac, rel=1e-14)


@pytest.mark.parametrize("make", [polynomial_schedule, exponential_decay])
def test_non_positive_transition_steps_is_constant(make) -> None:
    s = make(0.3, 0.5, 1.0, 0) if make is polynomial_schedule else make(0.3, 0.5, 0, 0)
    assert all(_as_float(s(t)) == 0.3 for t in COUNTS)


@pytest.mark.parametrize(
    ("rate", "begin", "steps", "staircase", "end"),
    [
        (0.5, 0, 1, False, None),
        (0.9, 3, 4, False, None),
        (0.9, 3, 4, True, None),
        (0.5, 0, 2, False, 0.1),  # decay with a lower bound
        (1.5, 2, 3, True, 4.0),  # growth with an upper bound
        (0.7, -2, 2, False, None),  # a negative begin counts as 0
    ],
)
def test_exponential_decay_closed_form(rate, begin, steps, staircase, end) -> None:
    s = exponential_decay(2.0, rate, begin, steps, staircase, end)
    for t in COUNTS:
        exponent = max(t - max(begin, 0), 0) / steps
        if staircase:
            exponent = math.floor(exponent)
        expected = 2.0 * rate**exponent
        if end is not None:
            expected = max(expected, end) if rate < 1 else min(expected, end)
        assert _as_float(s(t)) == pytest.approx(expected, rel=1e-13)


def test_schedule_sees_the_count_before_the_increment() -> None:
    """As TorchOpt and Optax: the first step uses lr(0)."""
    seen: list[int] = []

    def schedule(count: torch.Tensor) -> torch.Tensor:
        seen.append(int(count))
        return 0.1 * (count + 1)

    opt = torchopt_lite.sgd(lr=schedule)
    params = {"w": torch.zeros(2, dtype=torch.float64)}
    state = opt.init(params)
    for step in range(3):
        updates, state = opt.update({"w": torch.ones(2, dtype=torch.float64)}, state)
        torch.testing.assert_close(updates["w"], torch.full((2,), -0.1 * (step + 1)).double())
    assert seen == [0, 1, 2]


def test_schedule_lr_with_adam_equals_float_lr_at_each_step() -> None:
    """A schedule with a constant value is the float learning rate."""
    grads = [
        {"w": torch.randn(3, generator=torch.Generator().manual_seed(i)).double()} for i in range(4)
    ]
    results = []
    for lr in (0.05, polynomial_schedule(0.05, 0.05, 1.0, 10)):
        opt = torchopt_lite.adam(lr=lr)
        p = {"w": torch.zeros(3, dtype=torch.float64)}
        state = opt.init(p)
        for g in grads:
            u, state = opt.update({"w": g["w"].clone()}, state)
            p = torchopt_lite.apply_updates(p, u)
        results.append(p["w"])
    torch.testing.assert_close(results[0], results[1], rtol=1e-14, atol=0)
