"""ZeroOrderGradientModule: the same estimate as zero_order on the functional form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchopt_lite.diff.zero_order import (
    ZeroOrderGradientModule,
    enable_zero_order_gradients,
    zero_order,
)

F64 = torch.float64
X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [0.0, 1.0, 1.0]], dtype=F64)
Y = torch.tensor([1.0, -1.0, 0.5], dtype=F64)


def seeded_sample(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(shape, generator=g, dtype=F64)


class Regression(ZeroOrderGradientModule, method="antithetic", num_samples=8, sigma=0.2):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1).double()
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[0.1, 0.2, -0.3]], dtype=F64))
            self.linear.bias.fill_(0.05)
        self._sample = seeded_sample(seed)

    def forward(self, x, y, *, power=2):
        return (self.linear(x).squeeze(-1) - y).abs().pow(power).mean()

    def sample(self, sample_shape=torch.Size()):  # noqa: B008  (TorchOpt's signature)
        return self._sample(sample_shape)


def functional_reference(seed: int, power: int = 2, **options):
    """zero_order on the same loss written as a function of (weight, bias), with the same noise."""
    weight = torch.tensor([[0.1, 0.2, -0.3]], dtype=F64, requires_grad=True)
    bias = torch.tensor([0.05], dtype=F64, requires_grad=True)

    def loss(params, x, y):
        w, b = params
        return ((x @ w.T + b).squeeze(-1) - y).abs().pow(power).mean()

    defaults = {"method": "antithetic", "num_samples": 8, "sigma": 0.2}
    out = zero_order(seeded_sample(seed), **{**defaults, **options})(loss)((weight, bias), X, Y)
    out.backward()
    return out, weight.grad, bias.grad


def test_module_gradients_equal_the_functional_estimate() -> None:
    model = Regression(seed=3)
    out = model(X, Y, power=2)
    out.backward()
    ref_out, ref_w, ref_b = functional_reference(3)
    torch.testing.assert_close(out, ref_out.detach())
    torch.testing.assert_close(model.linear.weight.grad, ref_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.linear.bias.grad, ref_b, rtol=1e-12, atol=1e-12)
    # the parameters are restored after the perturbed evaluations
    torch.testing.assert_close(model.linear.weight, torch.tensor([[0.1, 0.2, -0.3]], dtype=F64))
    assert isinstance(model.linear.weight, nn.Parameter)


def test_keyword_arguments_reach_forward() -> None:
    model = Regression(seed=4)
    model(X, Y, power=1).backward()
    _, ref_w, _ = functional_reference(4, power=1)
    torch.testing.assert_close(model.linear.weight.grad, ref_w, rtol=1e-12, atol=1e-12)


def test_frozen_parameters_are_not_perturbed() -> None:
    model = Regression(seed=5)
    model.linear.bias.requires_grad_(False)
    seen = []

    def sample(shape):
        seen.append(tuple(shape))
        return torch.randn(shape, dtype=F64)

    model._sample = sample
    model(X, Y).backward()
    assert seen == [(8, 1, 3)]  # only the weight
    assert model.linear.bias.grad is None


def test_subclass_without_forward_takes_its_own_options() -> None:
    class Exact(Regression, method="central_difference", sigma=1e-6):
        pass

    model = Exact()
    model(X, Y).backward()
    w = model.linear.weight.detach().clone().requires_grad_()
    loss = ((X @ w.T + 0.05).squeeze(-1) - Y).square().mean()
    (expected,) = torch.autograd.grad(loss, w)
    torch.testing.assert_close(model.linear.weight.grad, expected, rtol=0, atol=1e-8)
    # the parent keeps its estimator
    torch.testing.assert_close(Regression(seed=3)(X, Y), functional_reference(3)[0].detach())


def test_tied_parameters_are_swapped_everywhere() -> None:
    class Tied(ZeroOrderGradientModule, method="central_difference", sigma=1e-6):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2, bias=False).double()
            self.b = nn.Linear(2, 2, bias=False).double()
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x)).sum()

        def sample(self, sample_shape):  # unused by finite differences
            return torch.zeros(sample_shape)

    model = Tied()
    x = torch.tensor([1.0, -2.0], dtype=F64)
    model(x).backward()
    w = model.a.weight.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(((x @ w.T) @ w.T).sum(), w)
    torch.testing.assert_close(model.a.weight.grad, expected, rtol=0, atol=1e-7)


def test_module_errors() -> None:
    class Empty(ZeroOrderGradientModule):
        def forward(self):
            return torch.zeros(())

        def sample(self, sample_shape):
            return torch.zeros(sample_shape)

    with pytest.raises(
        RuntimeError, match=r"Empty.forward: The module has no parameters that require grad"
    ):
        Empty()()
    with pytest.raises(
        TypeError, match=r"Zero-order gradient estimation is already enabled .* Regression"
    ):
        enable_zero_order_gradients(Regression)
    with pytest.raises(ValueError, match=r"zero_order: sigma must be positive and finite; got 0.0"):

        class Bad(ZeroOrderGradientModule, sigma=0.0):
            def forward(self):
                return torch.zeros(())


def test_forward_and_sample_are_abstract() -> None:
    class NoSample(ZeroOrderGradientModule):
        def forward(self):
            return torch.zeros(())

    class NoForward(ZeroOrderGradientModule):
        def sample(self, sample_shape):
            return torch.zeros(sample_shape)

    for cls in (NoSample, NoForward):
        with pytest.raises(TypeError, match=r"Can't instantiate abstract class"):
            cls()
