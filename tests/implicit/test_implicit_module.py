"""ImplicitMetaGradientModule against the closed form of a ridge-to-prior inner problem."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite import linear_solve
from torchopt_lite.diff.implicit import ImplicitMetaGradientModule

D = torch.float64
N, P = 10, 3


def closed_form_output(W0, b0, lam, X, y):
    """Inner: 0.5 |X w + b - y|^2 + 0.5 lam |(w, b) - (W0, b0)|^2; output: sum of predictions."""
    Z = torch.cat([X, torch.ones(N, 1, dtype=D)], 1)
    v0 = torch.cat([W0.reshape(-1), b0])
    v = torch.linalg.solve(Z.T @ Z + lam * torch.eye(P + 1, dtype=D), Z.T @ y + lam * v0)
    return (Z @ v).sum()


class Inner(ImplicitMetaGradientModule, linear_solve=linear_solve.solve_cg(rtol=1e-13)):
    def __init__(self, meta_net: torch.nn.Module, lam: torch.Tensor) -> None:
        super().__init__()
        self.meta_net = meta_net
        self.lam = lam
        self.net = torch.nn.Linear(P, 1, dtype=D)

    def forward(self, x):
        return self.net(x).squeeze(-1)

    def objective(self, x, y):
        reg = sum(
            ((p - m) ** 2).sum()
            for p, m in zip(self.parameters(), self.meta_net.parameters(), strict=True)
        )
        return 0.5 * ((self(x) - y) ** 2).sum() + 0.5 * self.lam * reg

    def solve(self, x, y):
        params = tuple(self.parameters())
        opt = torch.optim.SGD(params, lr=0.02)
        with torch.enable_grad():
            for _ in range(1500):
                opt.zero_grad()
                self.objective(x, y).backward(inputs=params)
                opt.step()
        return "done"


class InnerWithOptimality(Inner, linear_solve=linear_solve.solve_normal_cg(rtol=1e-14)):
    def optimality(self, x, y):
        r = self(x) - y
        w, b = self.net.weight, self.net.bias
        return (
            (r @ x).reshape(1, P) + self.lam * (w - self.meta_net.weight),
            r.sum().reshape(1) + self.lam * (b - self.meta_net.bias),
        )


@pytest.mark.parametrize("cls", [Inner, InnerWithOptimality])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_meta_gradient_equals_closed_form(cls, mode, seed: int) -> None:
    meta_net = torch.nn.Linear(P, 1, dtype=D)
    meta_net.train(mode == "train")  # eval mode: upstream #144 found no meta-parameters
    lam = torch.tensor(0.5, dtype=D, requires_grad=True)
    X, y = torch.randn(N, P, dtype=D), torch.randn(N, dtype=D)
    inner = cls(meta_net, lam)
    assert [n for n, _ in inner.named_meta_parameters()] == [
        "lam",
        "meta_net.weight",
        "meta_net.bias",
    ]
    assert [n for n, _ in inner.named_parameters()] == ["net.weight", "net.bias"]
    assert inner.solve(X, y) == "done"
    inner(X).sum().backward()
    W0 = meta_net.weight.detach().clone().requires_grad_()
    b0 = meta_net.bias.detach().clone().requires_grad_()
    lam0 = lam.detach().clone().requires_grad_()
    closed_form_output(W0, b0, lam0, X, y).backward()
    # The inner SGD converges to ~1e-12; the implicit gradient inherits that accuracy.
    torch.testing.assert_close(meta_net.weight.grad, W0.grad, rtol=0, atol=1e-8)
    torch.testing.assert_close(meta_net.bias.grad, b0.grad, rtol=0, atol=1e-8)
    torch.testing.assert_close(lam.grad, lam0.grad, rtol=0, atol=1e-8)


def test_class_definition_errors() -> None:
    with pytest.raises(
        TypeError, match="requires either an optimality\\(\\) method or an objective"
    ):

        class NoResidual(ImplicitMetaGradientModule):
            def solve(self):
                pass

    with pytest.raises(TypeError, match=r"Static: method objective\(\) must not be a staticmethod"):

        class Static(ImplicitMetaGradientModule):
            @staticmethod
            def objective():
                return torch.zeros(())

            def solve(self):
                pass

    class NoSolve(ImplicitMetaGradientModule):
        def objective(self):
            return torch.zeros(())

    with pytest.raises(TypeError, match="abstract"):
        NoSolve()


def test_missing_parameters_are_reported() -> None:
    class OnlyMeta(ImplicitMetaGradientModule):
        def __init__(self, theta):
            super().__init__()
            self.theta = theta

        def objective(self):
            return (self.theta**2).sum()

        def solve(self):
            pass

    with pytest.raises(RuntimeError, match=r"OnlyMeta\.solve: The module has no parameters\."):
        OnlyMeta(torch.ones(2, requires_grad=True)).solve()

    class OnlyParams(ImplicitMetaGradientModule):
        def __init__(self):
            super().__init__()
            self.x = torch.ones(2, requires_grad=True)

        def objective(self):
            return (self.x**2).sum()

        def solve(self):
            pass

    module = OnlyParams()
    with pytest.raises(RuntimeError, match=r"OnlyParams\.solve: The module has no meta-param"):
        module.solve()
    torch.testing.assert_close(module.x, torch.ones(2))  # untouched
