"""FuncOptimizer: the functional loop, differentiable through its steps, state round trip."""

from __future__ import annotations

import pytest
import torch

import torchopt_lite
from tests.alias._registry import CASES, Case

RTOL, ATOL = 1e-12, 1e-14


def _loss(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A smooth non-quadratic loss (the Hessian depends on the point)."""
    return ((params["w"] - x) ** 2).sum() + (params["b"] ** 4).sum() * 0.1 + params["w"].sum() ** 2


def _params(requires_grad: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {
        "w": torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_(requires_grad),
        "b": torch.randn(2, generator=gen, dtype=torch.float64).requires_grad_(requires_grad),
    }


X = torch.linspace(-1.0, 1.0, 3, dtype=torch.float64)


@pytest.mark.parametrize("case", CASES[::3], ids=lambda c: c.id)
def test_steps_equal_functional_loop(case: Case) -> None:
    params = _params()
    func = torchopt_lite.FuncOptimizer(case.make())
    p = params
    for _ in range(4):
        p = func.step(_loss(p, X), p)

    opt = case.make()
    q = {k: v.detach().clone() for k, v in params.items()}
    state = opt.init(q)
    for _ in range(4):
        q = {k: v.detach().requires_grad_(True) for k, v in q.items()}
        grads = dict(zip(q, torch.autograd.grad(_loss(q, X), list(q.values())), strict=True))
        updates, state = opt.update(grads, state, params=q, inplace=False)
        q = torchopt_lite.apply_updates(q, updates, inplace=False)
    for k in params:
        torch.testing.assert_close(p[k].detach(), q[k].detach(), rtol=RTOL, atol=ATOL)


def _grad(loss: torch.Tensor, params: dict) -> dict:
    gs = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    return dict(zip(params, gs, strict=True))


def _unrolled_sgd_momentum(x: torch.Tensor, lr: float, mu: float) -> dict:
    """Two steps of heavy-ball SGD written out by hand: b1 = g0, b2 = mu b1 + g1."""
    p0 = _params()
    g0 = _grad(_loss(p0, x), p0)
    p1 = {k: p0[k] - lr * g0[k] for k in p0}
    g1 = _grad(_loss(p1, x), p1)
    return {k: p1[k] - lr * (mu * g0[k] + g1[k]) for k in p0}


def _unrolled_adam(x: torch.Tensor, lr: float, b1: float, b2: float, eps: float) -> dict:
    """Two steps of Adam written out by hand."""
    p = _params()
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v = {k: torch.zeros_like(t) for k, t in p.items()}
    for t in (1, 2):
        g = _grad(_loss(p, x), p)
        m = {k: b1 * m[k] + (1 - b1) * g[k] for k in p}
        v = {k: b2 * v[k] + (1 - b2) * g[k] ** 2 for k in p}
        p = {
            k: p[k] - lr * (m[k] / (1 - b1**t)) / (torch.sqrt(v[k] / (1 - b2**t)) + eps) for k in p
        }
    return p


@pytest.mark.parametrize(
    ("impl", "reference"),
    [
        (
            lambda: torchopt_lite.sgd(lr=0.1, momentum=0.9),
            lambda x: _unrolled_sgd_momentum(x, 0.1, 0.9),
        ),
        (
            lambda: torchopt_lite.adam(lr=0.1, betas=(0.8, 0.9), eps=1e-3),
            lambda x: _unrolled_adam(x, 0.1, 0.8, 0.9, 1e-3),
        ),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_meta_gradient_through_two_steps(impl, reference) -> None:
    """d(outer loss)/dx through two inner steps equals the hand-unrolled autograd reference."""
    x = X.clone().requires_grad_(True)
    func = torchopt_lite.FuncOptimizer(impl())
    p = _params()
    for _ in range(2):
        p = func.step(_loss(p, x), p)
    outer = sum((v**2).sum() for v in p.values())
    (got,) = torch.autograd.grad(outer, x)

    x_ref = X.clone().requires_grad_(True)
    p_ref = reference(x_ref)
    for k in p:
        torch.testing.assert_close(p[k], p_ref[k], rtol=RTOL, atol=ATOL)
    outer_ref = sum((v**2).sum() for v in p_ref.values())
    (expected,) = torch.autograd.grad(outer_ref, x_ref)
    assert expected.abs().max() > 1e-3  # the meta-gradient is not trivially zero
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_state_dict_round_trip() -> None:
    impl = torchopt_lite.adam(lr=0.05)
    uninterrupted = torchopt_lite.FuncOptimizer(impl)
    p = _params()
    for _ in range(4):
        p = uninterrupted.step(_loss(p, X), p)

    first = torchopt_lite.FuncOptimizer(impl)
    q = _params()
    for _ in range(2):
        q = first.step(_loss(q, X), q)
    state = first.state_dict()
    assert int(state[1].count) == 2
    second = torchopt_lite.FuncOptimizer(impl)
    second.load_state_dict(state)
    assert second.state_dict() is state
    for _ in range(2):
        q = second.step(_loss(q, X), q)
    for k in p:
        torch.testing.assert_close(q[k], p[k], rtol=RTOL, atol=ATOL)


def test_inplace_step_equals_out_of_place() -> None:
    results = []
    for inplace in (False, True):
        func = torchopt_lite.FuncOptimizer(torchopt_lite.adam(lr=0.05), inplace=inplace)
        p = _params()
        for _ in range(3):
            p = func.step(_loss(p, X), p)
        results.append({k: v.detach() for k, v in p.items()})
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=RTOL, atol=ATOL)
