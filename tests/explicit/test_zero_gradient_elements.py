r"""Meta-gradients through adaptive optimizers when some elements never get a gradient.

An element whose gradient is exactly 0 at every inner step (a zero-padded input feature, a dead
unit) has :math:`v = m = 0`, and :math:`\sqrt{v}` has no derivative there. It cannot influence
anything, so the meta-gradient must equal that of the same problem without the element, and be 0
on it. torch's ``sqrt`` backward makes it 0/0 = NaN, which then spreads through the whole weight
(TorchOpt 0.7.3 returns NaN for the whole tensor).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import torchopt_lite as torchopt
from torchopt_lite._ops import _Sqrt

META = {
    "MetaAdam": lambda m: torchopt.MetaAdam(m, lr=0.1),
    "MetaAdamW": lambda m: torchopt.MetaAdamW(m, lr=0.1, weight_decay=0.0),
    "MetaRMSProp": lambda m: torchopt.MetaRMSProp(m, lr=0.05),
    "MetaRMSProp-centered": lambda m: torchopt.MetaRMSProp(m, lr=0.05, centered=True),
    "MetaAdaGrad": lambda m: torchopt.MetaAdaGrad(m, lr=0.1),
    "MetaRAdam": lambda m: torchopt.MetaRAdam(m, lr=0.1),
    "MetaAdaMax": lambda m: torchopt.MetaAdaMax(m, lr=0.1),
    "MetaAdaDelta": lambda m: torchopt.MetaAdaDelta(m, lr=1.0),
}


def _data(live: int, dead: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, live, generator=g, dtype=torch.float64)
    y = torch.randn(2, 8, 1, generator=g, dtype=torch.float64)
    pad = torch.zeros(2, 8, dead, dtype=torch.float64)
    return torch.cat([x, pad], dim=-1), y


def _meta_gradient(make: Callable[[nn.Module], object], x: torch.Tensor, y: torch.Tensor):
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(1, 3, generator=g, dtype=torch.float64)[:, : x.shape[-1]]
    net = nn.Linear(x.shape[-1], 1, bias=False).double()
    net.weight = nn.Parameter(w0.clone())
    meta = net.weight
    opt = make(net)
    for _ in range(3):  # inner steps on the support set
        opt.step(((net(x[0]) - y[0]) ** 2).mean())
    ((net(x[1]) - y[1]) ** 2).mean().backward()  # outer loss on the query set
    return meta.grad


@pytest.mark.parametrize("name", sorted(META))
def test_meta_gradient_ignores_elements_without_gradient(name: str) -> None:
    x, y = _data(live=2, dead=1)
    full = _meta_gradient(META[name], x, y)
    reduced = _meta_gradient(META[name], x[..., :2], y)
    assert torch.isfinite(full).all(), full
    torch.testing.assert_close(full[:, :2], reduced, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(full[:, 2], torch.zeros(1, dtype=torch.float64), rtol=0, atol=0)


def test_functional_rmsprop_under_torch_func_ignores_elements_without_gradient() -> None:
    """The per-leaf rendering (inside ``torch.func.grad``) takes the same derivative."""
    x, y = _data(live=2, dead=1)

    def outer(w0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        opt = torchopt.rmsprop(lr=0.05)
        params = (w0,)
        state = opt.init(params)
        for _ in range(3):
            g = torch.func.grad(lambda w: ((x[0] @ w.T - y[0]) ** 2).mean())(params[0])
            updates, state = opt.update((g,), state, inplace=False)
            params = torchopt.apply_updates(params, updates, inplace=False)
        return ((x[1] @ params[0].T - y[1]) ** 2).mean()

    w0 = torch.randn(1, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    full = torch.func.grad(outer)(w0, x)
    reduced = torch.func.grad(outer)(w0[:, :2].clone(), x[..., :2])
    assert torch.isfinite(full).all(), full
    torch.testing.assert_close(full[:, :2], reduced, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("one_leaf", [False, True], ids=["foreach", "per-leaf"])
def test_sqrt_derivative_is_sqrts_away_from_zero_and_zero_at_zero(one_leaf: bool) -> None:
    xs = (
        torch.rand(4, dtype=torch.float64, requires_grad=True) + 0.5,
        torch.rand(3, dtype=torch.float64, requires_grad=True) + 0.5,
    )
    xs = tuple(x.detach().requires_grad_() for x in xs)
    if one_leaf:
        xs = xs[:1]
    assert torch.autograd.gradcheck(lambda *a: _Sqrt.apply(*a), xs)
    assert torch.autograd.gradgradcheck(lambda *a: _Sqrt.apply(*a), xs)
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (s, *_) = _Sqrt.apply(zero, *xs[1:])
    (g,) = torch.autograd.grad(s.sum(), zero, create_graph=True)
    torch.testing.assert_close(g, torch.zeros(3, dtype=torch.float64), rtol=0, atol=0)
    (gg,) = torch.autograd.grad(g.sum(), zero, allow_unused=True, materialize_grads=True)
    assert torch.isfinite(gg).all()
