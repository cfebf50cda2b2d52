"""TorchOpt 0.7.3 user code (its own test's patterns) runs on torchopt_lite unchanged."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import torchopt_lite as torchopt
import torchopt_lite.diff.zero_order  # makes torchopt.diff.zero_order available

F64 = torch.float64
K = 4000


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 4, generator=g, dtype=F64), torch.randn(8, 1, generator=g, dtype=F64)


def antithetic_bound(g: torch.Tensor) -> float:
    # On a quadratic, antithetic weights are g^T eps exactly; Var[(g^T eps) eps_i] = |g|^2 + g_i^2
    # <= 2 |g|^2, so 5 standard errors are at most 5 sqrt(2) |g| / sqrt(K).
    return 5 * math.sqrt(2) * g.norm().item() / math.sqrt(K)


def test_functional_decorator_called_through_the_module() -> None:
    torch.manual_seed(42)
    model = nn.Linear(4, 1).double()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def fmodel(params, x):
        return torch.func.functional_call(model, dict(zip(names, params, strict=True)), (x,))

    @torchopt.diff.zero_order(
        distribution=torch.distributions.Normal(loc=0, scale=1),
        method="antithetic",
        argnums=0,
        sigma=0.01,
        num_samples=K,
    )
    def forward_process(params, fn, x, y):
        return F.mse_loss(fn(params, x), y)

    x, y = data()
    grads = torch.autograd.grad(forward_process(params, fmodel, x, y), params)
    exact = torch.autograd.grad(F.mse_loss(fmodel(params, x), y), params)
    flat_est, flat_exact = (
        torch.cat([g.flatten() for g in grads]),
        torch.cat([g.flatten() for g in exact]),
    )
    assert (flat_est - flat_exact).abs().max() <= antithetic_bound(flat_exact)


def test_module_subclass_through_torchopt_nn() -> None:
    torch.manual_seed(42)

    class FcNetWithLoss(
        torchopt.nn.ZeroOrderGradientModule, method="antithetic", sigma=0.01, num_samples=K
    ):
        def __init__(self, dim, out):
            super().__init__()
            self.net = nn.Linear(dim, out).double()
            self.loss = nn.MSELoss()
            self.distribution = torch.distributions.Normal(loc=0, scale=1)

        def forward(self, x, y):
            return self.loss(self.net(x), y)

        def sample(self, sample_shape=torch.Size()):  # noqa: B008  (TorchOpt's signature)
            return self.distribution.sample(sample_shape)

    x, y = data()
    model = FcNetWithLoss(4, 1)
    exact = torch.autograd.grad(F.mse_loss(model.net(x), y), list(model.parameters()))
    model(x, y).backward()
    flat_est = torch.cat([p.grad.flatten() for p in model.parameters()])
    flat_exact = torch.cat([g.flatten() for g in exact])
    assert (flat_est - flat_exact).abs().max() <= antithetic_bound(flat_exact)
