"""Shared streams and runners for the combinator tests (partition, MultiSteps, lookahead, ...)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import optree
import pytest
import torch

import torchopt_lite

N = 8
RTOL, ATOL = 1e-10, 1e-12
INPLACE = pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])


def params() -> dict[str, torch.Tensor]:
    """The small float64 tree of the brief: a matrix, a vector and a 0-d tensor."""
    gen = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, 4, generator=gen, dtype=torch.float64),
        "b": torch.randn(5, generator=gen, dtype=torch.float64),
        "s": torch.randn((), generator=gen, dtype=torch.float64),
    }


def grads(step: int, bad: dict[int, float] | None = None) -> dict[str, torch.Tensor]:
    """The gradient of step ``step``; ``bad[step]`` (a NaN or an inf) goes into ``w[0, 0]``."""
    gen = torch.Generator().manual_seed(100 + step)
    out = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params().items()}
    if bad and step in bad:
        out["w"][0, 0] = bad[step]
    return out


def clone(tree: Any) -> Any:
    return optree.tree_map(torch.clone, tree)


def run(
    t: Any,
    *,
    inplace: bool,
    steps: int = N,
    bad: dict[int, float] | None = None,
    with_params: bool = True,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]], Any]:
    """``steps`` steps of ``t`` from :func:`params`: (updates, params after each step, state)."""
    p = params()
    state = t.init(p)
    ups, ps = [], []
    for step in range(steps):
        kwargs = {"params": p} if with_params else {}
        u, state = t.update(clone(grads(step, bad)), state, inplace=inplace, **kwargs)
        ups.append(clone(u))
        p = torchopt_lite.apply_updates(p, u, inplace=False)
        ps.append(clone(p))
    return ups, ps, state


def optax_run(
    make: Callable[[Any], Any], *, steps: int = N, bad: dict[int, float] | None = None
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], Any]:
    """The same stream through Optax in float64: ``make(optax)`` builds the transformation."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    p = {k: jnp.asarray(v.numpy()) for k, v in params().items()}
    tx = make(optax)
    state = tx.init(p)
    ups, ps = [], []
    for step in range(steps):
        g = {k: jnp.asarray(v.numpy()) for k, v in grads(step, bad).items()}
        u, state = tx.update(g, state, p)
        ups.append({k: np.asarray(v) for k, v in u.items()})
        p = optax.apply_updates(p, u)
        ps.append({k: np.asarray(v) for k, v in p.items()})
    return ups, ps, state


def assert_trees_close(ours: list[Any], theirs: list[Any], *, equal_nan: bool = False) -> None:
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert set(a) == set(b), step
        for k in a:
            torch.testing.assert_close(
                a[k],
                torch.tensor(np.array(b[k]), dtype=a[k].dtype),
                rtol=RTOL,
                atol=ATOL,
                equal_nan=equal_nan,
                msg=lambda m, step=step, k=k: f"step {step}, leaf {k}: {m}",
            )


def save_load(state: Any) -> Any:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same_state(a: Any, b: Any) -> None:
    la, sa = optree.tree_flatten(a)
    lb, sb = optree.tree_flatten(b)
    assert sa == sb
    for x, y in zip(la, lb, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
