"""The out-of-place update is differentiable: gradcheck through steps of every registry alias."""

from __future__ import annotations

from collections.abc import Callable

import optree
import pytest
import torch

import torchopt_lite
from tests.alias._registry import CASES, Case

STEPS = 2


def _small_tree(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(2, 2, generator=gen, dtype=torch.float64),
        "b": torch.randn(3, generator=gen, dtype=torch.float64),
    }


def _unrolled(
    case: Case, **overrides
) -> tuple[Callable[..., tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
    """``f(params, grads per step, float state tensors, lr) -> final params`` and its inputs.

    The initial state comes from one step with another gradient, so every state tensor holds
    a realistic value (positive second moments, a count of 1).
    """
    params = _small_tree(0)
    warm = case.make(**overrides)
    state = warm.init(params)
    _, state = warm.update(_small_tree(1), state, params=params, inplace=False)
    state_leaves, state_spec = optree.tree_flatten(state)
    float_index = [i for i, x in enumerate(state_leaves) if x.is_floating_point()]
    grads = [_small_tree(2 + t) for t in range(STEPS)]
    p_leaves, p_spec = optree.tree_flatten(params)
    g_leaves = [leaf for g in grads for leaf in optree.tree_leaves(g)]
    lr = torch.tensor(case.kwargs["lr"], dtype=torch.float64)
    n_p, n_g = len(p_leaves), len(g_leaves)

    def f(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p = optree.tree_unflatten(p_spec, list(inputs[:n_p]))
        gs = inputs[n_p : n_p + n_g]
        s_in = inputs[n_p + n_g : -1]
        leaves = [x.clone() for x in state_leaves]  # the int count is advanced per call
        for i, x in zip(float_index, s_in, strict=True):
            leaves[i] = x
        s = optree.tree_unflatten(state_spec, leaves)
        opt = case.make(**{**overrides, "lr": inputs[-1]})
        for t in range(STEPS):
            g = optree.tree_unflatten(p_spec, list(gs[t * n_p : (t + 1) * n_p]))
            u, s = opt.update(g, s, params=p, inplace=False)
            p = torchopt_lite.apply_updates(p, u, inplace=False)
        return tuple(optree.tree_leaves(p))

    inputs = (*p_leaves, *g_leaves, *(state_leaves[i] for i in float_index), lr)
    return f, tuple(x.detach().clone().requires_grad_(True) for x in inputs)


# AdaDelta's second accumulator starts near 0 (n_1 ~ eps * g^2), where sqrt(n + eps) is steep:
# a finite-difference step of 1e-6 would be as large as n + eps itself.
FD_EPS = {"adadelta": 1e-9}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradcheck_through_steps(case: Case) -> None:
    """With respect to params, the gradients of each step, the state and a 0-d tensor lr."""
    f, inputs = _unrolled(case)
    # the function really depends on every input (no input is silently detached)
    outs = f(*inputs)
    grads = torch.autograd.grad(sum(o.sum() for o in outs), inputs, allow_unused=True)
    assert all(g is not None for g in grads)
    eps = FD_EPS.get(case.alias, 1e-6)
    assert torch.autograd.gradcheck(f, inputs, eps=eps, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    ("alias", "kwargs"),
    [
        ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
        ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        # eps_root > 0 keeps sqrt(v + eps_root) away from the kink at 0 for second order
        ("adam", {"lr": 0.05, "eps_root": 1e-4, "weight_decay": 0.1}),
    ],
    ids=["sgd-momentum-wd", "sgd-nesterov", "adam-eps_root"],
)
def test_gradgradcheck_through_steps(alias: str, kwargs: dict) -> None:
    case = Case(alias, kwargs, torch.optim.SGD, {}, "gradgrad")
    f, inputs = _unrolled(case)
    assert torch.autograd.gradgradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("alias", ["sgd", "adam", "adamw", "adadelta", "adamax", "radam"])
def test_moment_requires_grad_connects_initial_moments(alias: str) -> None:
    """With ``moment_requires_grad`` the zero-initialised moments are leaves of the graph."""
    opt = getattr(torchopt_lite, alias)(
        lr=0.1, moment_requires_grad=True, **({"momentum": 0.9} if alias == "sgd" else {})
    )
    params = _small_tree(0)
    state = opt.init(params)
    moments = [x for x in optree.tree_leaves(state) if x.is_floating_point()]
    assert moments and all(x.requires_grad and x.is_leaf for x in moments)
    p = params
    for seed in (1, 2):
        u, state = opt.update(_small_tree(seed), state, params=p, inplace=False)
        p = torchopt_lite.apply_updates(p, u, inplace=False)
    loss = sum((v**2).sum() for v in p.values())
    grads = torch.autograd.grad(loss, moments, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
