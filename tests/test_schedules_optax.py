"""Optax's schedules: each against a plain reference from Optax's published formula, against
optax itself where it is installed (jax x64), under vmap and torch.compile, and as a learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import torchopt_lite
from torchopt_lite import schedule as sched

COUNTS = range(0, 41)  # every boundary of the cases below lies inside

# --- plain references, written from Optax's formulas (Python floats, float64) ---------------


def ref_polynomial(init: float, end: float, power: float, steps: int, t: int) -> float:
    if steps <= 0:
        return init
    k = min(max(t, 0), steps)
    return (init - end) * (1 - k / steps) ** power + end


def ref_linear(init: float, end: float, steps: int, t: int) -> float:
    return ref_polynomial(init, end, 1.0, steps, t)


def ref_exponential(init, steps, rate, begin=0, staircase=False, end=None, t=0) -> float:
    """Optax's order: (init_value, transition_steps, decay_rate, ...)."""
    if steps <= 0:
        return init
    begin = max(begin, 0)
    p = (t - begin) / steps
    if staircase:
        p = math.floor(p)
    value = init * rate**p
    if end is not None:
        value = max(value, end) if rate < 1 else min(value, end)
    return init if t - begin <= 0 else value


def ref_piecewise_constant(init: float, boundaries_and_scales: dict | None, t: int) -> float:
    value = init
    for boundary, scale in sorted((boundaries_and_scales or {}).items()):
        indicator = max(0.0, math.copysign(1.0, boundary - t)) if boundary != t else 0.0
        value = value * indicator + (1 - indicator) * scale * value
    return value


def ref_cosine_decay(init: float, steps: int, alpha=0.0, exponent=1.0, t=0) -> float:
    k = min(t, steps)
    decay = 0.5 * (1 + math.cos(math.pi * k / steps))
    return init * ((1 - alpha) * decay**exponent + alpha)


def ref_piecewise_interpolate(kind: str, init: float, bs: dict | None, t: int) -> float:
    boundaries = sorted((bs or {}).items())
    bounds = [0] + [b for b, _ in boundaries]
    values = [init]
    for _, scale in boundaries:
        values.append(values[-1] * scale)
    out = 0.0
    for i in range(len(bounds) - 1):
        if bounds[i] <= t < bounds[i + 1]:
            pct = (t - bounds[i]) / max(bounds[i + 1] - bounds[i], 1)
            start, end = values[i], values[i + 1]
            if kind == "linear":
                out += start + (end - start) * pct
            else:
                out += end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
    return out + (values[-1] if t >= bounds[-1] else 0.0)


def ref_join(fns: list[Callable[[int], float]], boundaries: list[int], t: int) -> float:
    out = fns[0](t)
    for boundary, fn in zip(boundaries, fns[1:], strict=True):
        if t >= boundary:
            out = fn(t - boundary)
    return out


def ref_linear_onecycle(T, peak, pct_start=0.3, pct_final=0.85, div=25.0, final=1e4, t=0):
    bs = {int(pct_start * T): div, int(pct_final * T): 1.0 / div, T: 1.0 / final}
    return ref_piecewise_interpolate("linear", peak / div, bs, t)


def ref_cosine_onecycle(T, peak, pct_start=0.3, div=25.0, final=1e4, t=0):
    bs = {int(pct_start * T): div, T: 1.0 / (div * final)}
    return ref_piecewise_interpolate("cosine", peak / div, bs, t)


def ref_warmup_cosine(
    init_value, peak_value, warmup_steps, decay_steps, end_value=0.0, exponent=1.0, t=0
) -> float:
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    decay_steps -= warmup_steps
    return ref_join(
        [
            lambda s: ref_linear(init_value, peak_value, warmup_steps, s),
            lambda s: ref_cosine_decay(peak_value, decay_steps, alpha, exponent, s),
        ],
        [warmup_steps],
        t,
    )


def ref_sgdr(cycles: list[dict], t: int) -> float:
    fns, boundaries, step = [], [], 0
    for kw in cycles:
        fns.append(lambda s, kw=kw: ref_warmup_cosine(**kw, t=s))
        step += kw["decay_steps"]
        boundaries.append(step)
    return ref_join(fns, boundaries[:-1], t)


SGDR_CYCLES = [
    {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 2, "decay_steps": 6},
    {"init_value": 0.1, "peak_value": 0.5, "warmup_steps": 0, "decay_steps": 5, "end_value": 0.05},
    {"init_value": 0.0, "peak_value": 0.3, "warmup_steps": 3, "decay_steps": 9, "exponent": 2.0},
]
PC = {3: 0.5, 7: 0.1, 12: 2.0, 30: 0.0}
PI = {0: 2.0, 5: 0.5, 9: 0.0, 15: 1.0, 22: 3.0}

# (id, build from a library: ours or optax (same names and arguments), reference t -> value)
CASES: list[tuple[str, Callable[[Any], Any], Callable[[int], float]]] = [
    ("constant", lambda lib: lib.constant_schedule(0.3), lambda t: 0.3),
    (
        "piecewise_constant",
        lambda lib: lib.piecewise_constant_schedule(0.5, PC),
        lambda t: ref_piecewise_constant(0.5, PC, t),
    ),
    (
        "piecewise_constant_at_0",
        lambda lib: lib.piecewise_constant_schedule(2.0, {0: 0.5}),
        lambda t: ref_piecewise_constant(2.0, {0: 0.5}, t),
    ),
    (
        "piecewise_constant_none",
        lambda lib: lib.piecewise_constant_schedule(0.7),
        lambda t: 0.7,
    ),
    (
        "cosine_decay",
        lambda lib: lib.cosine_decay_schedule(1.0, 10),
        lambda t: ref_cosine_decay(1.0, 10, t=t),
    ),
    (
        "cosine_decay_alpha_exponent",
        lambda lib: lib.cosine_decay_schedule(0.5, 7, alpha=0.1, exponent=2.0),
        lambda t: ref_cosine_decay(0.5, 7, 0.1, 2.0, t),
    ),
    *[
        (
            f"piecewise_interpolate_{kind}",
            lambda lib, kind=kind: lib.piecewise_interpolate_schedule(kind, 0.4, PI),
            lambda t, kind=kind: ref_piecewise_interpolate(kind, 0.4, PI, t),
        )
        for kind in ("linear", "cosine")
    ],
    (
        "piecewise_interpolate_none",
        lambda lib: lib.piecewise_interpolate_schedule("cosine", 0.4),
        lambda t: 0.4,
    ),
    (
        "linear_onecycle",
        lambda lib: lib.linear_onecycle_schedule(20, 0.1),
        lambda t: ref_linear_onecycle(20, 0.1, t=t),
    ),
    (
        "linear_onecycle_args",
        lambda lib: lib.linear_onecycle_schedule(33, 1.0, 0.2, 0.9, 10.0, 100.0),
        lambda t: ref_linear_onecycle(33, 1.0, 0.2, 0.9, 10.0, 100.0, t),
    ),
    (
        "cosine_onecycle",
        lambda lib: lib.cosine_onecycle_schedule(20, 0.1),
        lambda t: ref_cosine_onecycle(20, 0.1, t=t),
    ),
    (
        "cosine_onecycle_args",
        lambda lib: lib.cosine_onecycle_schedule(29, 2.0, 0.4, 5.0, 50.0),
        lambda t: ref_cosine_onecycle(29, 2.0, 0.4, 5.0, 50.0, t),
    ),
    (
        "warmup_constant",
        lambda lib: lib.warmup_constant_schedule(0.0, 1.0, 5),
        lambda t: ref_join([lambda s: ref_linear(0.0, 1.0, 5, s), lambda s: 1.0], [5], t),
    ),
    (
        "warmup_constant_no_warmup",
        lambda lib: lib.warmup_constant_schedule(0.2, 1.0, 0),
        lambda t: 0.2,
    ),
    (
        "warmup_cosine_decay",
        lambda lib: lib.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20, end_value=0.1),
        lambda t: ref_warmup_cosine(0.0, 1.0, 5, 20, 0.1, t=t),
    ),
    (
        "warmup_cosine_decay_no_warmup_exponent",
        lambda lib: lib.warmup_cosine_decay_schedule(0.1, 0.5, 0, 10, 0.0, 2.0),
        lambda t: ref_warmup_cosine(0.1, 0.5, 0, 10, 0.0, 2.0, t),
    ),
    (
        "warmup_cosine_decay_zero_peak",
        lambda lib: lib.warmup_cosine_decay_schedule(0.3, 0.0, 4, 12, end_value=0.1),
        lambda t: ref_warmup_cosine(0.3, 0.0, 4, 12, 0.1, t=t),
    ),
    (
        "warmup_exponential_decay",
        lambda lib: lib.warmup_exponential_decay_schedule(0.0, 1.0, 4, 3, 0.5),
        lambda t: ref_join(
            [lambda s: ref_linear(0.0, 1.0, 4, s), lambda s: ref_exponential(1.0, 3, 0.5, t=s)],
            [4],
            t,
        ),
    ),
    (
        "warmup_exponential_decay_staircase_bounded",
        lambda lib: lib.warmup_exponential_decay_schedule(0.1, 1.0, 3, 2, 0.8, 2, True, 0.5),
        lambda t: ref_join(
            [
                lambda s: ref_linear(0.1, 1.0, 3, s),
                lambda s: ref_exponential(1.0, 2, 0.8, 2, True, 0.5, s),
            ],
            [3],
            t,
        ),
    ),
    (
        "warmup_exponential_growth_bounded",
        lambda lib: lib.warmup_exponential_decay_schedule(0.0, 1.0, 2, 4, 1.2, end_value=2.0),
        lambda t: ref_join(
            [
                lambda s: ref_linear(0.0, 1.0, 2, s),
                lambda s: ref_exponential(1.0, 4, 1.2, 0, False, 2.0, s),
            ],
            [2],
            t,
        ),
    ),
    (
        "warmup_exponential_constant",
        lambda lib: lib.warmup_exponential_decay_schedule(0.0, 1.0, 2, 0, 0.5),
        lambda t: ref_join([lambda s: ref_linear(0.0, 1.0, 2, s), lambda s: 1.0], [2], t),
    ),
    (
        "sgdr",
        lambda lib: lib.sgdr_schedule(SGDR_CYCLES),
        lambda t: ref_sgdr(SGDR_CYCLES, t),
    ),
    (
        "join_schedules",
        lambda lib: lib.join_schedules(
            [
                lib.linear_schedule(0.0, 1.0, 4),
                lib.cosine_decay_schedule(1.0, 6),
                lib.constant_schedule(0.25),
            ],
            [4, 13],
        ),
        lambda t: ref_join(
            [
                lambda s: ref_linear(0.0, 1.0, 4, s),
                lambda s: ref_cosine_decay(1.0, 6, t=s),
                lambda s: 0.25,
            ],
            [4, 13],
            t,
        ),
    ),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("name", "build", "ref"), CASES, ids=IDS)
def test_matches_optax_formula(name, build, ref) -> None:
    s = build(sched)
    for t in COUNTS:
        out = s(torch.tensor(t))
        assert isinstance(out, torch.Tensor)
        assert out.dtype == torch.float64
        assert out.shape == ()
        assert float(out) == pytest.approx(ref(t), rel=1e-12, abs=1e-12), t
        assert float(s(t)) == float(out)  # a Python int count gives the same value


@pytest.mark.parametrize(("name", "build", "ref"), CASES, ids=IDS)
def test_matches_optax(name, build, ref) -> None:
    optax = pytest.importorskip("optax")
    import jax

    jax.config.update("jax_enable_x64", True)
    ours, theirs = build(sched), build(optax)
    for t in COUNTS:
        expected = float(theirs(jax.numpy.asarray(t, dtype=jax.numpy.int64)))
        assert float(ours(torch.tensor(t))) == pytest.approx(expected, rel=1e-10, abs=1e-12), t


@pytest.mark.parametrize(("name", "build", "ref"), CASES, ids=IDS)
def test_vmap_over_counts_without_host_syncs(name, build, ref) -> None:
    """vmap forbids ``.item()`` and data-dependent Python branches: the schedules use none."""
    s = build(sched)
    counts = torch.arange(len(COUNTS), dtype=torch.int64)
    batched = torch.func.vmap(s)(counts)
    assert batched.shape == counts.shape
    expected = torch.stack([s(c) for c in counts])
    torch.testing.assert_close(batched, expected, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_fullgraph() -> None:
    """One compiled function over three joined schedules: no graph break, eager values."""
    torch._dynamo.reset()
    warmup_cosine = sched.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20, end_value=0.1)
    onecycle = sched.linear_onecycle_schedule(20, 0.1)
    restarts = sched.sgdr_schedule(SGDR_CYCLES)

    def all_three(count: torch.Tensor) -> torch.Tensor:
        return torch.stack([warmup_cosine(count), onecycle(count), restarts(count)])

    compiled = torch.compile(all_three, fullgraph=True)
    for t in (0, 3, 5, 6, 17, 20, 25):
        count = torch.tensor(t)
        torch.testing.assert_close(compiled(count), all_three(count), rtol=1e-12, atol=1e-12)


def test_schedule_as_adam_lr_matches_the_formula() -> None:
    """adam(lr=cosine_decay_schedule(...)): step t uses lr(t), t counted from 0."""
    lr = sched.cosine_decay_schedule(0.1, 100)
    opt = torchopt_lite.adam(lr=lr)
    gen = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(3, generator=gen, dtype=torch.float64)}
    state = opt.init(params)
    w, m, v = params["w"].clone(), torch.zeros(3).double(), torch.zeros(3).double()
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(5):
        g = torch.randn(3, generator=gen, dtype=torch.float64)
        updates, state = opt.update({"w": g.clone()}, state)
        params = torchopt_lite.apply_updates(params, updates)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
        w = w - ref_cosine_decay(0.1, 100, t=t) * m_hat / (v_hat.sqrt() + eps)
        torch.testing.assert_close(params["w"], w, rtol=1e-12, atol=1e-14)


def test_sgdr_alias() -> None:
    assert sched.sgdr is sched.sgdr_schedule


ERRORS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("constant_value_type", lambda: sched.constant_schedule("0.1"), TypeError, "value"),
    ("constant_value_inf", lambda: sched.constant_schedule(math.inf), ValueError, "value"),
    (
        "piecewise_constant_init",
        lambda: sched.piecewise_constant_schedule(None),
        TypeError,
        "init_value",
    ),
    (
        "piecewise_constant_not_dict",
        lambda: sched.piecewise_constant_schedule(1.0, [(1, 0.5)]),
        TypeError,
        "boundaries_and_scales",
    ),
    (
        "piecewise_constant_negative_scale",
        lambda: sched.piecewise_constant_schedule(1.0, {2: -0.5}),
        ValueError,
        "boundaries_and_scales",
    ),
    (
        "piecewise_constant_float_boundary",
        lambda: sched.piecewise_constant_schedule(1.0, {2.5: 0.5}),
        TypeError,
        "boundary",
    ),
    (
        "piecewise_interpolate_negative_boundary",
        lambda: sched.piecewise_interpolate_schedule("linear", 1.0, {-1: 0.5}),
        ValueError,
        "boundary",
    ),
    (
        "piecewise_interpolate_type",
        lambda: sched.piecewise_interpolate_schedule("cubic", 1.0, {2: 0.5}),
        ValueError,
        "interpolate_type",
    ),
    ("cosine_decay_steps", lambda: sched.cosine_decay_schedule(1.0, 0), ValueError, "decay_steps"),
    (
        "cosine_decay_steps_type",
        lambda: sched.cosine_decay_schedule(1.0, 10.0),
        TypeError,
        "decay_steps",
    ),
    ("cosine_decay_alpha", lambda: sched.cosine_decay_schedule(1.0, 5, "a"), TypeError, "alpha"),
    (
        "cosine_decay_exponent",
        lambda: sched.cosine_decay_schedule(1.0, 5, exponent=math.nan),
        ValueError,
        "exponent",
    ),
    (
        "linear_onecycle_steps",
        lambda: sched.linear_onecycle_schedule(0, 0.1),
        ValueError,
        "transition_steps",
    ),
    (
        "linear_onecycle_pct_final",
        lambda: sched.linear_onecycle_schedule(10, 0.1, pct_start=0.5, pct_final=0.4),
        ValueError,
        "pct_final",
    ),
    (
        "linear_onecycle_div",
        lambda: sched.linear_onecycle_schedule(10, 0.1, div_factor=0.0),
        ValueError,
        "div_factor",
    ),
    (
        "cosine_onecycle_pct_start",
        lambda: sched.cosine_onecycle_schedule(10, 0.1, pct_start=1.5),
        ValueError,
        "pct_start",
    ),
    (
        "cosine_onecycle_final_div",
        lambda: sched.cosine_onecycle_schedule(10, 0.1, final_div_factor=-1.0),
        ValueError,
        "final_div_factor",
    ),
    (
        "cosine_onecycle_peak",
        lambda: sched.cosine_onecycle_schedule(10, None),
        TypeError,
        "peak_value",
    ),
    (
        "warmup_constant_steps",
        lambda: sched.warmup_constant_schedule(0.0, 1.0, -1),
        ValueError,
        "warmup_steps",
    ),
    (
        "warmup_cosine_decay_steps",
        lambda: sched.warmup_cosine_decay_schedule(0.0, 1.0, 5, 5),
        ValueError,
        "decay_steps",
    ),
    (
        "warmup_cosine_end_value",
        lambda: sched.warmup_cosine_decay_schedule(0.0, 1.0, 5, 10, end_value="0"),
        TypeError,
        "end_value",
    ),
    (
        "warmup_exponential_rate",
        lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 5, 10, 0.0),
        ValueError,
        "decay_rate",
    ),
    (
        "warmup_exponential_steps_type",
        lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 5, 2.5, 0.5),
        TypeError,
        "transition_steps",
    ),
    (
        "warmup_exponential_begin_type",
        lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 5, 2, 0.5, 1.5),
        TypeError,
        "transition_begin",
    ),
    (
        "warmup_exponential_init",
        lambda: sched.warmup_exponential_decay_schedule("0", 1.0, 5, 2, 0.5),
        TypeError,
        "init_value",
    ),
    (
        "warmup_exponential_end_value",
        lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 5, 2, 0.5, end_value="x"),
        TypeError,
        "end_value",
    ),
    ("sgdr_empty", lambda: sched.sgdr_schedule([]), ValueError, "cosine_kwargs"),
    ("sgdr_no_decay_steps", lambda: sched.sgdr_schedule([{}]), TypeError, "decay_steps"),
    (
        "join_not_callable",
        lambda: sched.join_schedules([0.1, 0.2], [3]),
        TypeError,
        "schedules",
    ),
    (
        "join_lengths",
        lambda: sched.join_schedules([sched.constant_schedule(0.1)], [3]),
        ValueError,
        "boundaries",
    ),
    (
        "join_boundary_type",
        lambda: sched.join_schedules([sched.constant_schedule(0.1)] * 2, [3.0]),
        TypeError,
        "boundaries",
    ),
]


@pytest.mark.parametrize(("name", "make", "error", "arg"), ERRORS, ids=[e[0] for e in ERRORS])
def test_invalid_arguments_raise_naming_the_argument(name, make, error, arg) -> None:
    with pytest.raises(error, match=arg):
        make()
