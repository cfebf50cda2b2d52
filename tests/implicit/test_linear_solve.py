"""linear_solve factories and utils against dense solves (float64)."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite import linear_solve
from torchopt_lite.linear_solve.utils import (
    make_normal_matvec,
    make_ridge_matvec,
    make_rmatvec,
    materialize_matvec,
)

D = torch.float64


@pytest.fixture
def system(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    B = torch.randn(5, 5, dtype=D)
    return B @ B.T + 5 * torch.eye(5, dtype=D), torch.randn(5, dtype=D)


@pytest.mark.parametrize(
    ("solve", "normal"),
    [
        (linear_solve.solve_cg(ridge=0.3, rtol=1e-13), False),
        (linear_solve.solve_normal_cg(ridge=0.3, rtol=1e-14), True),
        (linear_solve.solve_bicgstab(ridge=0.3, rtol=1e-13), False),
        (linear_solve.solve_inv(ridge=0.3), False),
    ],
    ids=["cg", "normal_cg", "bicgstab", "inv"],
)
def test_solvers_with_ridge(solve, normal, system) -> None:
    A, b = system
    eye = torch.eye(5, dtype=D)
    # normal CG solves (A^T A + ridge I) x = A^T b; the others (A + ridge I) x = b.
    expected = (
        torch.linalg.solve(A.T @ A + 0.3 * eye, A.T @ b)
        if normal
        else torch.linalg.solve(A + 0.3 * eye, b)
    )
    torch.testing.assert_close(solve(lambda v: A @ v, b), expected, rtol=1e-9, atol=1e-11)


def test_normal_cg_solves_nonsymmetric_systems_and_init(seed: int) -> None:
    A = torch.randn(6, 6, dtype=D) + 4 * torch.eye(6, dtype=D)
    b = torch.randn(6, dtype=D)
    x = linear_solve.solve_normal_cg(rtol=1e-14, init=torch.ones(6, dtype=D))(lambda v: A @ v, b)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-11)


def test_solve_inv_couples_leaves() -> None:
    # TorchOpt keeps only each leaf's diagonal block; the coupling term matters here.
    def matvec(t):
        return {"a": 2 * t["a"] + t["b"], "b": 3 * t["b"]}

    x = linear_solve.solve_inv()(
        matvec, {"a": torch.tensor([3.0], dtype=D), "b": torch.tensor([3.0], dtype=D)}
    )
    torch.testing.assert_close(x["a"], torch.tensor([1.0], dtype=D))
    torch.testing.assert_close(x["b"], torch.tensor([1.0], dtype=D))
    A, flat_mv, ravel, unravel = materialize_matvec(
        matvec, {"a": torch.zeros(1, dtype=D), "b": torch.zeros(1, dtype=D)}
    )
    torch.testing.assert_close(A, torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=D))
    tree = {"a": torch.tensor([1.0], dtype=D), "b": torch.tensor([2.0], dtype=D)}
    torch.testing.assert_close(flat_mv(ravel(tree)), torch.tensor([4.0, 6.0], dtype=D))
    torch.testing.assert_close(unravel(ravel(tree))["b"], tree["b"])
    scalar = linear_solve.solve_inv()(lambda v: 4 * v, torch.tensor(2.0, dtype=D))
    torch.testing.assert_close(scalar, torch.tensor(0.5, dtype=D))


def test_solve_inv_neumann(system) -> None:
    A, b = system
    A = A / torch.linalg.matrix_norm(A, 2)
    x = linear_solve.solve_inv(ns=True, maxiter=500, alpha=1.0)(lambda v: A @ v, b)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)


def test_utils(system) -> None:
    A, b = system
    A = A + torch.triu(torch.ones(5, 5, dtype=D))  # non-symmetric
    torch.testing.assert_close(make_rmatvec(lambda v: A @ v, b)(b), A.T @ b)
    torch.testing.assert_close(make_normal_matvec(lambda v: A @ v)(b), A.T @ A @ b)
    rmv = make_rmatvec(lambda v: A @ v, b)
    torch.testing.assert_close(make_normal_matvec(lambda v: A @ v, rmv)(b), A.T @ A @ b)
    torch.testing.assert_close(make_ridge_matvec(lambda v: A @ v, 2.0)(b), A @ b + 2 * b)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (linear_solve.solve_cg, {"ridge": -1.0}, r"solve_cg: ridge must be >= 0 or None; got -1.0"),
        (linear_solve.solve_normal_cg, {"rtol": -1.0}, r"solve_normal_cg: rtol must be >= 0"),
        (linear_solve.solve_bicgstab, {"maxiter": 1.5}, r"solve_bicgstab: maxiter must be"),
        (linear_solve.solve_inv, {"maxiter": 3}, r"solve_inv: maxiter and alpha apply only"),
        (linear_solve.solve_inv, {"ridge": -2.0}, r"solve_inv: ridge must be >= 0"),
    ],
)
def test_factories_validate_at_construction(factory, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_factories_reject_unknown_options() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'tol'"):
        linear_solve.solve_cg(tol=1e-3)  # type: ignore[call-arg]


def test_make_rmatvec_without_grad_mode(system) -> None:
    """Under no_grad (a backward pass) the VJP is taken by plain autograd: same values, trees
    kept, a graph built when grad mode is on at the call, and a wrong tree reported."""
    A, b = system
    A = A + torch.triu(torch.ones(5, 5, dtype=D))  # non-symmetric
    with torch.no_grad():
        rmv = make_rmatvec(lambda t: {"y": A @ t["x"]}, {"x": b})
        got = rmv({"y": b})
        assert set(got) == {"x"}
        torch.testing.assert_close(got["x"], A.T @ b, rtol=1e-14, atol=0)
        # Differentiable where grad mode is on: the VJP of y -> A^T y is y' -> A y'.
        _, vjp = torch.func.vjp(lambda y: rmv({"y": y})["x"], b)
        torch.testing.assert_close(vjp(b)[0], A @ b, rtol=1e-14, atol=0)
        with pytest.raises(ValueError, match="rmatvec: y must have the structure of matvec's"):
            rmv([b])
