"""The combinators under torch.func.vmap, torch.compile(fullgraph=True) and gradcheck.

The per-combinator tests (against Optax and plain references, in place and out of place) are in
``test_combinators_*.py`` beside this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree
import pytest
import torch

import torchopt_lite
from tests.transform._combinators import clone, grads, params
from torchopt_lite.base import GradientTransformation
from torchopt_lite.transform.apply_every import apply_every
from torchopt_lite.transform.apply_if_finite import apply_if_finite
from torchopt_lite.transform.conditionally import conditionally_mask, conditionally_transform
from torchopt_lite.transform.ema import ema
from torchopt_lite.transform.freeze import selective_transform
from torchopt_lite.transform.lookahead import lookahead
from torchopt_lite.transform.multi_steps import MultiSteps, skip_not_finite
from torchopt_lite.transform.named_chain import named_chain
from torchopt_lite.transform.partition import partition

FACTORIES: dict[str, Callable[[], GradientTransformation]] = {
    "apply_if_finite": lambda: apply_if_finite(torchopt_lite.adam(0.1), 1),
    "multi_steps": lambda: MultiSteps(
        torchopt_lite.adam(0.1), 2, should_skip_update_fn=skip_not_finite
    ).gradient_transformation(),
    "apply_every": lambda: torchopt_lite.chain(apply_every(2), torchopt_lite.sgd(0.1)),
    "conditionally_transform": lambda: conditionally_transform(
        torchopt_lite.adam(0.1), lambda step: step % 2 == 1
    ),
    "conditionally_mask": lambda: conditionally_mask(
        torchopt_lite.adam(0.1), lambda step: step % 2 == 1
    ),
    "lookahead": lambda: lookahead(torchopt_lite.adam(0.1), 2, 0.5, reset_state=True),
    "ema": lambda: ema(0.9),
    "partition": lambda: partition(
        {"a": torchopt_lite.adam(0.1), "b": torchopt_lite.sgd(0.1, momentum=0.9)},
        {"w": "a", "b": "b", "s": "b"},
    ),
    "named_chain": lambda: named_chain(("t", torchopt_lite.transform.trace(0.9)), ("e", ema(0.5))),
    "selective_transform": lambda: selective_transform(
        torchopt_lite.adam(0.1), freeze_mask={"w": False, "b": True, "s": False}
    ),
}


def _steps(t: GradientTransformation, p: Any, gs: list[Any], inplace: bool) -> list[Any]:
    state = t.init(p)
    out = []
    for g in gs:
        u, state = t.update(g, state, params=p, inplace=inplace)
        p = torchopt_lite.apply_updates(p, u, inplace=False)
        out.append(p)
    return out


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_inplace_equals_pure_and_inputs_untouched_when_pure(name: str) -> None:
    bad = {2: float("nan")}
    gs = [grads(step, bad) for step in range(5)]
    a = _steps(FACTORIES[name](), params(), clone(gs), inplace=True)
    frozen = clone(gs)
    b = _steps(FACTORIES[name](), params(), frozen, inplace=False)
    for x, y in zip(a, b, strict=True):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=1e-14, atol=1e-15, equal_nan=True)
    for g, g0 in zip(frozen, gs, strict=True):  # out of place: the gradients are not written
        for k in g:
            torch.testing.assert_close(g[k], g0[k], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_complex_leaves_are_their_real_views(name: str) -> None:
    """A complex leaf steps as its real view (torch.optim's rule), through every wrapper."""
    gen = torch.Generator().manual_seed(3)
    shapes = {"w": (3, 2), "b": (5,), "s": ()}

    def draw() -> dict[str, torch.Tensor]:
        return {k: torch.randn(v, generator=gen, dtype=torch.complex128) for k, v in shapes.items()}

    p, gs = draw(), [draw() for _ in range(4)]
    if name in ("apply_if_finite", "multi_steps"):  # the wrappers that skip such a step
        gs[1]["w"][0, 0] = complex(float("nan"), 0.0)
    as_real = lambda tree: {k: torch.view_as_real(v) for k, v in tree.items()}  # noqa: E731
    for inplace in (True, False):
        ours = _steps(FACTORIES[name](), clone(p), clone(gs), inplace)
        real = _steps(
            FACTORIES[name](), as_real(clone(p)), [as_real(g) for g in clone(gs)], inplace
        )
        for x, y in zip(ours, real, strict=True):
            for k in x:
                torch.testing.assert_close(
                    torch.view_as_real(x[k]), y[k], rtol=1e-14, atol=1e-15, equal_nan=True
                )


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_none_gradient_leaves(name: str) -> None:
    """A leaf without a gradient: passed through as None, or (accumulators) counted as zeros."""
    t = FACTORIES[name]()
    p = params()
    state = t.init(p)
    for inplace in (True, False):
        g = {**grads(0), "b": None}
        u, _ = t.update(g, state if not inplace else clone(state), params=p, inplace=inplace)
        if name in ("multi_steps", "apply_every", "lookahead"):
            assert isinstance(u["b"], torch.Tensor)
        else:
            assert u["b"] is None
        assert isinstance(u["w"], torch.Tensor)


def test_vmap_apply_if_finite_per_example() -> None:
    """vmap over 3 gradient streams; the NaN of stream 1 skips its step only."""
    t = apply_if_finite(torchopt_lite.sgd(0.1, momentum=0.9), 1)
    p = {"w": torch.zeros(3, 3, 2, dtype=torch.float64)}
    gs = [torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    gs = [g.double() for g in gs]
    gs[1][1, 0, 0] = float("nan")

    def step(g: torch.Tensor, state: Any) -> tuple[Any, Any]:
        return t.update({"w": g}, state, inplace=False)

    state = torch.func.vmap(t.init)(p)
    batched = []
    for g in gs:
        u, state = torch.func.vmap(step)(g, state)
        batched.append(u["w"])
    for i in range(3):
        s = t.init({"w": p["w"][i]})
        for j, g in enumerate(gs):
            u, s = t.update({"w": g[i]}, s, inplace=False)
            torch.testing.assert_close(batched[j][i], u["w"], rtol=1e-14, atol=0)
    torch.testing.assert_close(batched[1][1], torch.zeros(3, 2, dtype=torch.float64))
    assert state.total_notfinite.tolist() == [0, 1, 0]


@pytest.mark.filterwarnings(  # torch 2.13's known compile warnings (see tests/test_compile.py)
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be instantiated"
    ":DeprecationWarning"
)
def test_compile_fullgraph_multi_steps() -> None:
    """One out-of-place MultiSteps(adam) step compiled with fullgraph=True equals eager."""
    ms = MultiSteps(torchopt_lite.adam(0.1), 2, should_skip_update_fn=skip_not_finite)

    def step(g: Any, state: Any) -> tuple[Any, Any]:
        return ms.update(g, state, inplace=False)

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    eager_state = compiled_state = ms.init(params())
    for i in range(4):
        g = grads(i, {2: float("inf")})
        u, eager_state = step(clone(g), eager_state)
        v, compiled_state = compiled(clone(g), compiled_state)
        for k in u:
            torch.testing.assert_close(v[k], u[k], rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(compiled_state.gradient_step, eager_state.gradient_step)


@pytest.mark.parametrize("name", ["lookahead", "apply_if_finite", "multi_steps", "partition"])
def test_gradcheck_two_pure_steps(name: str) -> None:
    """Differentiable with respect to the params and both gradients through 2 steps."""
    t = FACTORIES[name]()
    base = params()
    spec = optree.tree_structure(base)
    n = spec.num_leaves

    def fn(*leaves: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = optree.tree_unflatten(spec, list(leaves[:n]))
        gs = [optree.tree_unflatten(spec, list(leaves[n * (i + 1) : n * (i + 2)])) for i in (0, 1)]
        return tuple(optree.tree_leaves(_steps(t, p, gs, inplace=False)[-1]))

    inputs = [
        x.detach().clone().requires_grad_(True)
        for tree in (base, grads(0), grads(1))
        for x in optree.tree_leaves(tree)
    ]
    assert torch.autograd.gradcheck(fn, tuple(inputs), eps=1e-6, atol=1e-5, rtol=1e-4)
