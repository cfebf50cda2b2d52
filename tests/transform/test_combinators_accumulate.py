"""MultiSteps (gradient accumulation), its skip rules, and apply_every."""

from __future__ import annotations

import functools

import pytest
import torch

import torchopt_lite
from tests.transform._combinators import (
    INPLACE,
    N,
    assert_same_state,
    assert_trees_close,
    clone,
    grads,
    optax_run,
    params,
    run,
    save_load,
)
from torchopt_lite.transform.apply_every import ApplyEveryState, apply_every
from torchopt_lite.transform.multi_steps import (
    MultiSteps,
    MultiStepsState,
    skip_large_updates,
    skip_not_finite,
)


def _optax_multi_steps(optax, k, use_grad_mean=True, skip=None):
    import jax.numpy as jnp

    return optax.MultiSteps(
        optax.adam(0.1),
        k,
        use_grad_mean=use_grad_mean,
        should_skip_update_fn=skip,
        accumulator_dtype=jnp.float64,
    ).gradient_transformation()


@INPLACE
@pytest.mark.parametrize("use_grad_mean", [True, False], ids=["mean", "sum"])
def test_multi_steps_matches_optax_and_reference(use_grad_mean: bool, inplace: bool) -> None:
    ms = MultiSteps(torchopt_lite.adam(0.1), every_k_schedule=3, use_grad_mean=use_grad_mean)
    t = ms.gradient_transformation()
    ups, _, state = run(t, inplace=inplace)
    ref, _, _ = optax_run(lambda optax: _optax_multi_steps(optax, 3, use_grad_mean))
    assert_trees_close(ups, ref)
    # plain reference: adam on the mean (sum) of each block of 3 gradients, zeros in between
    adam = torchopt_lite.adam(0.1)
    s = adam.init(params())
    for step, u in enumerate(ups):
        if step % 3 != 2:
            assert all(bool((x == 0).all()) for x in u.values())
            continue
        block = [grads(i) for i in range(step - 2, step + 1)]
        g = {k: sum(b[k] for b in block) / (3 if use_grad_mean else 1) for k in block[0]}
        expected, s = adam.update(g, s, inplace=False)
        for k in u:
            torch.testing.assert_close(u[k], expected[k], rtol=1e-12, atol=1e-14)
    assert int(state.gradient_step) == N // 3 and int(state.mini_step) == N % 3
    assert_same_state(save_load(state), state)


def test_multi_steps_has_updated_and_schedule() -> None:
    """A callable schedule: 1 mini-step for the first inner step, then 2."""
    ms = MultiSteps(torchopt_lite.sgd(1.0), lambda step: torch.where(step < 1, 1, 2))
    state = ms.init(params())
    flags = []
    for step in range(5):
        _, state = ms.update(clone(grads(step)), state)
        flags.append(bool(ms.has_updated(state)))
    assert flags == [True, False, True, False, True]
    assert ms.inner_opt is not None

    def optax_schedule(optax):
        import jax.numpy as jnp

        return optax.MultiSteps(
            optax.sgd(1.0), lambda step: jnp.where(step < 1, 1, 2), accumulator_dtype=jnp.float64
        ).gradient_transformation()

    ref, _, _ = optax_run(optax_schedule, steps=5)
    ups, _, _ = run(
        MultiSteps(
            torchopt_lite.sgd(1.0), lambda step: torch.where(step < 1, 1, 2)
        ).gradient_transformation(),
        inplace=False,
        steps=5,
    )
    assert_trees_close(ups, ref)


@INPLACE
def test_multi_steps_skip_not_finite_matches_optax(inplace: bool) -> None:
    bad = {1: float("nan"), 4: float("inf")}
    ms = MultiSteps(torchopt_lite.adam(0.1), 2, should_skip_update_fn=skip_not_finite)
    ups, _, state = run(ms.gradient_transformation(), inplace=inplace, bad=bad)
    ref, _, ref_state = optax_run(
        lambda optax: _optax_multi_steps(optax, 2, skip=optax.skip_not_finite), bad=bad
    )
    assert_trees_close(ups, ref)
    assert int(state.gradient_step) == int(ref_state.gradient_step) == 3
    assert int(state.skip_state["num_not_finite"]) == 0
    assert_same_state(save_load(state), state)


@INPLACE
def test_multi_steps_skip_large_updates_matches_optax(inplace: bool) -> None:
    skip = functools.partial(skip_large_updates, max_squared_norm=22.0)
    ms = MultiSteps(torchopt_lite.adam(0.1), 2, should_skip_update_fn=skip)
    ups, _, state = run(ms.gradient_transformation(), inplace=inplace)
    ref, _, ref_state = optax_run(
        lambda optax: _optax_multi_steps(
            optax, 2, skip=functools.partial(optax.skip_large_updates, max_squared_norm=22.0)
        )
    )
    assert_trees_close(ups, ref)
    assert int(state.gradient_step) == int(ref_state.gradient_step)
    assert 0 < int(state.gradient_step) < N // 2  # some steps skipped, some taken


def test_multi_steps_errors() -> None:
    with pytest.raises(TypeError, match="MultiSteps: opt must be a GradientTransformation"):
        MultiSteps(lambda g: g, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MultiSteps: every_k_schedule must be >= 1; got 0"):
        MultiSteps(torchopt_lite.sgd(0.1), 0)
    with pytest.raises(TypeError, match="MultiSteps: every_k_schedule must be an int; got float"):
        MultiSteps(torchopt_lite.sgd(0.1), 2.0)  # type: ignore[arg-type]
    ms = MultiSteps(torchopt_lite.sgd(0.1), 2)
    state = ms.init(params())
    with pytest.raises(ValueError, match="updates have 1 leaves but the state accumulates 3"):
        ms.update({"w": params()["w"]}, state)
    with pytest.raises(ValueError, match="state must be of type MultiStepsState"):
        ms.update(params(), (1,))
    bad = MultiSteps(torchopt_lite.sgd(0.1), 2, should_skip_update_fn=lambda u, s, p: (1, ()))
    with pytest.raises(TypeError, match="should_skip_update_fn must return a 0-d bool tensor"):
        bad.update(params(), bad.init(params()))
    assert isinstance(state, MultiStepsState)


@INPLACE
def test_apply_every_matches_optax(inplace: bool) -> None:
    t = torchopt_lite.chain(apply_every(3), torchopt_lite.sgd(0.1))
    ups, _, state = run(t, inplace=inplace)
    ref, _, _ = optax_run(lambda optax: optax.chain(optax.apply_every(3), optax.sgd(0.1)))
    assert_trees_close(ups, ref)
    # plain reference: every third step, -lr times the sum of the last three gradients
    for step, u in enumerate(ups):
        if step % 3 == 2:
            expected = sum(grads(i)["b"] for i in range(step - 2, step + 1)) * -0.1
        else:
            expected = torch.zeros(5, dtype=torch.float64)
        torch.testing.assert_close(u["b"], expected, rtol=1e-12, atol=1e-14)
    assert isinstance(state[0], ApplyEveryState)
    assert_same_state(save_load(state), state)


def test_apply_every_errors() -> None:
    with pytest.raises(ValueError, match="apply_every: k must be >= 1; got 0"):
        apply_every(0)
    t = apply_every(2)
    with pytest.raises(ValueError, match="updates have 1 leaves but the state holds 3"):
        t.update({"w": params()["w"]}, t.init(params()))
