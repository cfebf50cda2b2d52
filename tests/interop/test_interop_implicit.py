"""Differentiable scipy solutions: implicit derivatives against closed forms (ridge regression)."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite.interop import minimize
from torchopt_lite.linear_solve import solve_inv, solve_normal_cg


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(20, 4, dtype=torch.float64, generator=g)
    y = torch.randn(20, dtype=torch.float64, generator=g)
    return X, y


def ridge(p, lam, X, y):
    return 0.5 * ((X @ p["w"] - y) ** 2).sum() + 0.5 * lam * (p["w"] ** 2).sum()


def _closed_form(lam, X, y):
    """w*(lam) = (X^T X + lam I)^{-1} X^T y, differentiable by plain autograd."""
    A = X.T @ X + lam * torch.eye(X.shape[1], dtype=X.dtype)
    return torch.linalg.solve(A, X.T @ y)


@pytest.mark.parametrize("method", ["BFGS", "L-BFGS-B", "Newton-CG", "trust-exact", "CG"])
def test_ridge_derivative_wrt_lambda(method: str) -> None:
    X, y = _data()
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    c = torch.linspace(-1, 2, 4, dtype=torch.float64)
    w0 = {"w": torch.zeros(4, dtype=torch.float64)}
    sol, res = minimize(ridge, w0, args=(lam, X, y), method=method, tol=1e-12)
    assert res.success
    (grad,) = torch.autograd.grad(c @ sol["w"], lam)
    # closed form: dw*/dlam = -(X^T X + lam I)^{-1} w*
    A = X.T @ X + lam.detach() * torch.eye(4, dtype=torch.float64)
    w_star = torch.linalg.solve(A, X.T @ y)
    expected = c @ -torch.linalg.solve(A, w_star)
    torch.testing.assert_close(sol["w"], w_star, rtol=0, atol=1e-7)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(w0["w"], torch.zeros(4, dtype=torch.float64), rtol=0, atol=0)


def test_ridge_jacobian_wrt_data_and_lambda() -> None:
    X, y = _data(1)
    X.requires_grad_(True)
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    sol, _ = minimize(ridge, {"w": torch.ones(4, dtype=torch.float64)}, args=(lam, X, y),
                      method="trust-exact", tol=1e-12)  # fmt: skip
    got = torch.autograd.grad(c @ sol["w"], (lam, X))
    expected = torch.autograd.grad(c @ _closed_form(lam, X, y), (lam, X))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-9)


def test_second_order_of_outer_loss_and_pytree_args() -> None:
    """Meta-parameters given as a dict; the gradient feeds an outer optimization step."""
    X, y = _data(2)
    meta = {"log_lam": torch.tensor(0.0, dtype=torch.float64, requires_grad=True)}

    def fun(p, meta, X, y):
        return ridge(p, meta["log_lam"].exp(), X, y)

    sol, _ = minimize(fun, {"w": torch.zeros(4, dtype=torch.float64)}, args=(meta, X, y),
                      method="Newton-CG", tol=1e-12)  # fmt: skip
    val_loss = ((X[:5] @ sol["w"] - y[:5]) ** 2).mean()
    (grad,) = torch.autograd.grad(val_loss, meta["log_lam"])
    lam = meta["log_lam"].exp()
    ref_loss = ((X[:5] @ _closed_form(lam, X, y) - y[:5]) ** 2).mean()
    (expected,) = torch.autograd.grad(ref_loss, meta["log_lam"])
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("solve", [solve_inv(), solve_normal_cg(rtol=1e-12)])
def test_implicit_solve_choice(solve) -> None:
    X, y = _data(3)
    lam = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    sol, _ = minimize(ridge, {"w": torch.zeros(4, dtype=torch.float64)}, args=(lam, X, y),
                      method="BFGS", tol=1e-12, implicit_solve=solve)  # fmt: skip
    (grad,) = torch.autograd.grad(sol["w"].sum(), lam)
    (expected,) = torch.autograd.grad(_closed_form(lam, X, y).sum(), lam)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-10)


def test_float32_params() -> None:
    X, y = _data(4)
    lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    sol, _ = minimize(ridge, {"w": torch.zeros(4)}, args=(lam, X.float(), y.float()),
                      method="BFGS")  # fmt: skip
    assert sol["w"].dtype == torch.float32
    (grad,) = torch.autograd.grad(sol["w"].double().sum(), lam)
    (expected,) = torch.autograd.grad(_closed_form(lam, X, y).sum(), lam)
    # float32 objective and Hessian-vector products: ~1e-4 relative accuracy
    torch.testing.assert_close(grad, expected, rtol=1e-3, atol=1e-5)


def test_not_converged_raises() -> None:
    X, y = _data(5)
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    w0 = {"w": torch.zeros(4, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"minimize: scipy did not converge \(.*maxiter"):
        minimize(ridge, w0, args=(lam, X, y), method="BFGS", options={"maxiter": 1})
    torch.testing.assert_close(w0["w"], torch.zeros(4, dtype=torch.float64), rtol=0, atol=0)
    assert lam.grad is None
