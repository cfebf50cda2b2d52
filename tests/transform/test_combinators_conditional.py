"""apply_if_finite, conditionally_transform and conditionally_mask."""

from __future__ import annotations

import pytest
import torch

import torchopt_lite
from tests.transform._combinators import (
    INPLACE,
    assert_same_state,
    assert_trees_close,
    clone,
    grads,
    optax_run,
    params,
    run,
    save_load,
)
from torchopt_lite.transform.apply_if_finite import ApplyIfFiniteState, apply_if_finite
from torchopt_lite.transform.conditionally import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)

BAD = {2: float("nan"), 3: float("inf"), 5: float("nan")}


@INPLACE
def test_apply_if_finite_matches_optax_and_reference(inplace: bool) -> None:
    """Skipped steps: zero updates, inner state kept; the 3rd bad step in a row is taken."""
    bad = {1: float("nan"), 3: float("nan"), 4: float("inf"), 5: float("nan")}
    t = apply_if_finite(torchopt_lite.adam(0.1), max_consecutive_errors=2)
    ups, _, state = run(t, inplace=inplace, bad=bad)
    ref, _, ref_state = optax_run(
        lambda optax: optax.apply_if_finite(optax.adam(0.1), max_consecutive_errors=2), bad=bad
    )
    assert_trees_close(ups, ref, equal_nan=True)
    assert int(state.total_notfinite) == int(ref_state.total_notfinite) == 4
    assert int(state.notfinite_count) == int(ref_state.notfinite_count)
    assert bool(state.last_finite) == bool(ref_state.last_finite)
    # plain reference for the steps before the accepted NaN step (5): adam on finite steps only
    adam = torchopt_lite.adam(0.1)
    s = adam.init(params())
    for step in range(5):
        if step in bad:
            assert all(bool((x == 0).all()) for x in ups[step].values())
            continue
        expected, s = adam.update(grads(step), s, inplace=False)
        for k in expected:
            torch.testing.assert_close(ups[step][k], expected[k], rtol=1e-12, atol=1e-14)
    assert torch.isnan(ups[5]["w"][0, 0])
    assert_same_state(save_load(state), state)


def test_apply_if_finite_inplace_keeps_the_old_state() -> None:
    """An in-place inner (adam overwrites its moments) cannot corrupt a skipped step's state."""
    t = apply_if_finite(torchopt_lite.adam(0.1), max_consecutive_errors=3)
    p = params()
    state = t.init(p)
    _, state = t.update(clone(grads(0)), state, inplace=True)
    before = clone(state.inner_state)
    u, after = t.update(clone(grads(1, {1: float("nan")})), state, inplace=True)
    assert_same_state(after.inner_state, before)
    assert_same_state(state.inner_state, before)  # the input state was not written either
    assert all(bool((x == 0).all()) for x in u.values())
    assert isinstance(after, ApplyIfFiniteState)


def test_apply_if_finite_errors() -> None:
    with pytest.raises(TypeError, match="max_consecutive_errors must be an int; got float"):
        apply_if_finite(torchopt_lite.sgd(0.1), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_consecutive_errors must be >= 0; got -1"):
        apply_if_finite(torchopt_lite.sgd(0.1), -1)
    t = apply_if_finite(torchopt_lite.sgd(0.1), 1)
    with pytest.raises(ValueError, match="call init"):
        t.update(params(), None)
    with pytest.raises(ValueError, match="state must be of type ApplyIfFiniteState; got dict"):
        t.update(params(), {})


def _every_other(step: torch.Tensor) -> torch.Tensor:
    return step % 2 == 0


@INPLACE
@pytest.mark.parametrize("kind", ["transform", "mask"])
def test_conditionally_matches_optax(kind: str, inplace: bool) -> None:
    ours = conditionally_transform if kind == "transform" else conditionally_mask
    t = ours(torchopt_lite.adam(0.1), _every_other)
    ups, _, state = run(t, inplace=inplace)

    def make(optax):
        theirs = getattr(optax.transforms, f"conditionally_{kind}")
        return theirs(optax.adam(0.1), lambda step: step % 2 == 0)

    ref, _, _ = optax_run(make)
    assert_trees_close(ups, ref)
    # plain reference: adam on the even steps; the odd ones pass through (or are zeros)
    adam = torchopt_lite.adam(0.1)
    s = adam.init(params())
    for step, u in enumerate(ups):
        g = grads(step)
        if step % 2 == 0:
            expected, s = adam.update(g, s, inplace=False)
        else:
            expected = g if kind == "transform" else {k: torch.zeros_like(v) for k, v in g.items()}
        for k in u:
            torch.testing.assert_close(u[k], expected[k], rtol=1e-12, atol=1e-14)
    cls = ConditionallyTransformState if kind == "transform" else ConditionallyMaskState
    assert isinstance(state, cls) and int(state.step) == 8
    assert_same_state(save_load(state), state)


@pytest.mark.parametrize("kind", ["transform", "mask"])
def test_conditionally_python_bool_and_extra_args(kind: str) -> None:
    ours = conditionally_transform if kind == "transform" else conditionally_mask
    seen = []

    def cond(step, value=None):
        seen.append(value)
        return False

    t = ours(torchopt_lite.sgd(1.0), cond, forward_extra_args=True)
    g = {"a": torch.ones(2)}
    u, _ = t.update(clone(g), t.init(g), value=torch.tensor(3.0))
    expected = g["a"] if kind == "transform" else torch.zeros(2)
    torch.testing.assert_close(u["a"], expected)
    assert seen == [torch.tensor(3.0)]
    t = ours(torchopt_lite.sgd(1.0), lambda step: True)
    u, _ = t.update(clone(g), t.init(g))
    torch.testing.assert_close(u["a"], -g["a"])


def test_conditionally_errors() -> None:
    t = conditionally_transform(torchopt_lite.sgd(0.1), lambda step: step)
    g = {"a": torch.ones(2)}
    with pytest.raises(TypeError, match=r"0-d bool tensor; got torch\.int64"):
        t.update(g, t.init(g))
    with pytest.raises(ValueError, match="state must be of type ConditionallyTransformState"):
        t.update(g, ())
    m = conditionally_mask(torchopt_lite.sgd(0.1), lambda step: 1)
    with pytest.raises(TypeError, match="must return a bool or a 0-d bool tensor; got 1"):
        m.update(g, m.init(g))
    with pytest.raises(ValueError, match="state must be of type ConditionallyMaskState"):
        m.update(g, ())
