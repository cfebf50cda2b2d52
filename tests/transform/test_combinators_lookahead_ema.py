"""lookahead (slow weights in the state) and ema."""

from __future__ import annotations

import numpy as np
import optree
import pytest
import torch

import torchopt_lite
from tests.transform._combinators import (
    INPLACE,
    RTOL,
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
from torchopt_lite.base import GradientTransformation
from torchopt_lite.transform.ema import EmaState, ema
from torchopt_lite.transform.lookahead import LookaheadState, lookahead


def _optax_lookahead(reset_state: bool):
    """Optax's lookahead on LookaheadParams; returns the fast and slow params of each step."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    tx = optax.lookahead(
        optax.adam(0.1), sync_period=3, slow_step_size=0.5, reset_state=reset_state
    )
    p = optax.LookaheadParams.init_synced({k: jnp.asarray(v.numpy()) for k, v in params().items()})
    state = tx.init(p)
    fast, slow = [], []
    for step in range(N):
        g = {k: jnp.asarray(v.numpy()) for k, v in grads(step).items()}
        u, state = tx.update(g, state, p)
        p = optax.apply_updates(p, u)
        fast.append({k: np.asarray(v) for k, v in p.fast.items()})
        slow.append({k: np.asarray(v) for k, v in p.slow.items()})
    return fast, slow


def _reference(reset_state: bool) -> list[dict[str, torch.Tensor]]:
    """Zhang et al.'s algorithm written plainly: k fast adam steps, then phi += a (theta - phi)."""
    adam = torchopt_lite.adam(0.1)
    theta = params()
    phi = clone(theta)
    s = adam.init(theta)
    out = []
    for step in range(N):
        u, s = adam.update(grads(step), s, inplace=False)
        theta = {k: theta[k] + u[k] for k in theta}
        if step % 3 == 2:
            phi = {k: phi[k] + 0.5 * (theta[k] - phi[k]) for k in phi}
            theta = clone(phi)
            if reset_state:
                s = adam.init(theta)
        out.append(clone(theta))
    return out


@INPLACE
@pytest.mark.parametrize("reset_state", [False, True], ids=["keep", "reset"])
def test_lookahead_matches_optax_and_reference(reset_state: bool, inplace: bool) -> None:
    t = lookahead(torchopt_lite.adam(0.1), 3, 0.5, reset_state=reset_state)
    _, ps, state = run(t, inplace=inplace)
    for step, (a, b) in enumerate(zip(ps, _reference(reset_state), strict=True)):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-14, msg=f"{step} {k}")
    fast, slow = _optax_lookahead(reset_state)
    assert_trees_close(ps, fast)
    final_slow = optree.tree_unflatten(optree.tree_structure(params()), list(state.slow))
    assert_trees_close([final_slow], slow[-1:])
    assert isinstance(state, LookaheadState) and int(state.steps_since_sync) == N % 3
    assert_same_state(save_load(state), state)


def test_lookahead_errors() -> None:
    with pytest.raises(TypeError, match="lookahead: fast_optimizer must be a Gradient"):
        lookahead(0.1, 3, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lookahead: sync_period must be >= 1; got 0"):
        lookahead(torchopt_lite.sgd(0.1), 0, 0.5)
    with pytest.raises(ValueError, match=r"lookahead: slow_step_size must be in \[0.0, 1.0\]"):
        lookahead(torchopt_lite.sgd(0.1), 2, 1.5)
    t = lookahead(torchopt_lite.sgd(0.1), 2, 0.5)
    p = params()
    state = t.init(p)
    with pytest.raises(ValueError, match="lookahead: params must be passed to update"):
        t.update(clone(p), state)
    with pytest.raises(ValueError, match="params have 1 tensors but the state holds 3 slow"):
        t.update({"w": p["w"]}, state, params={"w": p["w"]})
    odd = GradientTransformation(lambda q: (), lambda u, s, *, params=None, inplace=True: ((), s))
    t = lookahead(odd, 2, 0.5)
    with pytest.raises(ValueError, match="lookahead: updates must have the tree structure of"):
        t.update(clone(p), t.init(p), params=p)


@INPLACE
@pytest.mark.parametrize("debias", [True, False])
def test_ema_matches_optax_and_reference(debias: bool, inplace: bool) -> None:
    t = ema(0.8, debias=debias)
    ups, _, state = run(t, inplace=inplace)
    ref, _, _ = optax_run(lambda optax: optax.ema(0.8, debias=debias))
    assert_trees_close(ups, ref)
    m = {k: torch.zeros_like(v) for k, v in params().items()}
    for step, u in enumerate(ups):
        g = grads(step)
        m = {k: 0.8 * m[k] + 0.2 * g[k] for k in m}
        for k in m:
            expected = m[k] / (1 - 0.8 ** (step + 1)) if debias else m[k]
            torch.testing.assert_close(u[k], expected, rtol=RTOL, atol=1e-14)
    assert isinstance(state, EmaState) and int(state.count) == N
    assert_same_state(save_load(state), state)
    # the returned updates never share the state's buffers


def test_ema_errors() -> None:
    with pytest.raises(ValueError, match=r"ema: decay must be in \[0.0, 1.0\); got 1.0"):
        ema(1.0)
