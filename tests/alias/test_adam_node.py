"""The out-of-place Adam node against the op-by-op chain: values, gradients, second order."""

from __future__ import annotations

import optree
import pytest
import torch

import torchopt_lite
from tests._generic import generic

CONFIGS = {
    "adam": {"lr": 0.05},
    "adam-wd-maximize-eps_root": {
        "lr": 0.05,
        "weight_decay": 0.1,
        "maximize": True,
        "eps_root": 1e-3,
    },
    "adamw": {"lr": 0.05, "weight_decay": 0.2},
}


def _pair(name: str, **extra: object) -> tuple:
    alias = torchopt_lite.adamw if name.startswith("adamw") else torchopt_lite.adam
    fused = alias(**{**CONFIGS[name], **extra})
    return fused, generic(fused)


def _unroll(opt, params: list, grads: list, steps: int = 3) -> list:
    """Final params after ``steps`` out-of-place steps on gradients ``g_k * (1 + p)``."""
    state = opt.init(params)
    p = params
    for k in range(steps):
        g = [gi * (1.0 + pi) * (k + 1) for gi, pi in zip(grads, p, strict=True)]
        u, state = opt.update(g, state, params=p, inplace=False)
        p = torchopt_lite.apply_updates(p, u, inplace=False)
    return p


def _inputs(seed: int = 0) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(3, 2, generator=gen, dtype=torch.float64) for _ in range(2)]
    grads = [torch.randn(3, 2, generator=gen, dtype=torch.float64) for _ in range(2)]
    return [p.requires_grad_(True) for p in params], [g.requires_grad_(True) for g in grads]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_first_and_second_order_match_op_by_op(name: str) -> None:
    fused, plain = _pair(name)
    params, grads = _inputs()
    results = []
    for opt in (fused, plain):
        out = _unroll(opt, params, grads)
        loss = sum((o**2).sum() for o in out)
        first = torch.autograd.grad(loss, [*params, *grads], create_graph=True)
        second = torch.autograd.grad(sum((f**2).sum() for f in first), [*params, *grads])
        results.append((out, first, second))
    for a, b in zip(results[0], results[1], strict=True):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_tensor_learning_rate_gradient_matches_op_by_op() -> None:
    grads_of_lr = []
    for fused_first in (True, False):
        lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
        fused, plain = _pair("adam", lr=lr)
        params, grads = _inputs(1)
        out = _unroll(fused if fused_first else plain, params, grads)
        grads_of_lr.append(torch.autograd.grad(sum(o.sum() for o in out), lr)[0])
    torch.testing.assert_close(grads_of_lr[0], grads_of_lr[1], rtol=1e-10, atol=1e-12)


def test_gradcheck_and_gradgradcheck_through_two_steps() -> None:
    opt = torchopt_lite.adam(lr=0.1, eps_root=1e-4)

    def two_steps(p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        opt_lr = torchopt_lite.adam(lr=lr, eps_root=1e-4)
        state = opt_lr.init((p,))
        q = (p,)
        for k in range(2):
            u, state = opt_lr.update((g * (k + 1) + q[0],), state, inplace=False)
            q = torchopt_lite.apply_updates(q, u, inplace=False)
        return q[0]

    gen = torch.Generator().manual_seed(3)
    p = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(two_steps, (p, g, lr))
    assert torch.autograd.gradgradcheck(two_steps, (p, g, lr))
    del opt


def test_fused_node_is_used_out_of_place() -> None:
    """One AdamStep node per step on the tape (the point of the fused path)."""
    params, grads = _inputs()
    opt = torchopt_lite.adam(lr=0.1)
    u, _ = opt.update(grads, opt.init(params), inplace=False)
    assert "AdamStep" in type(u[0].grad_fn).__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_out_of_place_step_leaves_its_inputs_untouched(dtype: torch.dtype) -> None:
    """The kernel reads the caller's gradients and old moments and writes only fresh buffers."""
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(5, generator=gen, dtype=dtype) for _ in range(3)]
    opt = torchopt_lite.adam(lr=0.1)
    state = opt.init(params)
    state = opt.update([torch.randn(5, generator=gen, dtype=dtype) for _ in params], state)[1]
    grads = [torch.randn(5, generator=gen, dtype=dtype) for _ in params]
    inputs = [*grads, *optree.tree_leaves(state)]
    before = [x.clone() for x in inputs]
    updates, _ = opt.update(grads, state, inplace=False)
    assert all(torch.equal(x, y) for x, y in zip(before, inputs, strict=True))
    reference, _ = generic(opt).update([g.clone() for g in grads], state, inplace=False)
    for got, want in zip(updates, reference, strict=True):
        torch.testing.assert_close(
            got, want, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0
        )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_first_order_backward_without_graph_matches_op_by_op(name: str) -> None:
    """Plain backward (no create_graph) through the node equals autograd's op by op."""
    fused, plain = _pair(name)
    params, grads = _inputs(2)
    results = []
    for opt in (fused, plain):
        out = _unroll(opt, params, grads)
        loss = sum((o**2).sum() for o in out)
        results.append(torch.autograd.grad(loss, [*params, *grads]))
    for x, y in zip(*results, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
