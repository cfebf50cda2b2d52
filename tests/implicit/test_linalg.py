"""linalg.cg / bicgstab / ns / ns_inv against dense solves in float64."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite import linalg
from torchopt_lite.linalg.utils import cat_shapes, normalize_matvec

D = torch.float64


def spd(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=D)
    return B @ B.T + n * torch.eye(n, dtype=D)


def test_cg_matches_dense_solve(seed: int) -> None:
    A, b = spd(12), torch.randn(12, dtype=D)
    x = linalg.cg(lambda v: A @ v, b, rtol=1e-13)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-10, atol=1e-12)


def test_cg_tree_with_matrix_blocks_x0_and_preconditioner(seed: int) -> None:
    A = {"a": spd(4, 1), "b": spd(3, 2)}
    b = {"a": torch.randn(4, dtype=D), "b": torch.randn(3, dtype=D)}
    x0 = {"a": torch.ones(4, dtype=D), "b": torch.ones(3, dtype=D)}
    M = {k: torch.diag(1.0 / torch.diagonal(v)) for k, v in A.items()}  # Jacobi
    x = linalg.cg(A, b, x0, rtol=1e-13, M=M)
    for k in A:
        torch.testing.assert_close(x[k], torch.linalg.solve(A[k], b[k]), rtol=1e-10, atol=1e-12)


def test_cg_scalar_problem_converges() -> None:
    # upstream #222: maxiter = 10 * sum(shape) = 0 for a 0-d b in TorchOpt.
    x = linalg.cg(lambda v: 4.0 * v, torch.tensor(2.0, dtype=D))
    torch.testing.assert_close(x, torch.tensor(0.5, dtype=D))


def test_cg_vmap_equals_loop(seed: int) -> None:
    A, bs = spd(6), torch.randn(5, 6, dtype=D)
    batched = torch.func.vmap(lambda b: linalg.cg(lambda v: A @ v, b, rtol=1e-13))(bs)
    looped = torch.stack([linalg.cg(lambda v: A @ v, b, rtol=1e-13) for b in bs])
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(batched, torch.linalg.solve(A, bs.T).T, rtol=1e-10, atol=1e-12)


def test_cg_truncated_solve_equals_hand_iterations(seed: int) -> None:
    A, b = spd(8), torch.randn(8, dtype=D)
    x, r, p = torch.zeros(8, dtype=D), b.clone(), b.clone()
    for _ in range(3):  # textbook CG, three steps
        alpha = (r @ r) / (p @ A @ p)
        x, r_new = x + alpha * p, r - alpha * (A @ p)
        p, r = r_new + (r_new @ r_new) / (r @ r) * p, r_new
    torch.testing.assert_close(linalg.cg(lambda v: A @ v, b, maxiter=3), x, rtol=1e-12, atol=0)


def test_cg_nonconvergence_raises_when_strict() -> None:
    A, b = spd(8), torch.randn(8, dtype=D)
    with pytest.raises(linalg.ConvergenceError, match=r"cg: did not converge in maxiter=2"):
        linalg.cg(lambda v: A @ v, b, maxiter=2, strict=True)
    singular = torch.diag(torch.tensor([1.0, 0.0], dtype=D))  # b is not in its range
    with pytest.raises(linalg.ConvergenceError, match="did not converge"):
        linalg.cg(singular, torch.ones(2, dtype=D))  # default maxiter: strict


def test_cg_nonconvergence_under_vmap_gives_nan() -> None:
    A, bs = spd(8), torch.randn(2, 8, dtype=D)
    bs[1] = 0.0  # converged from the start
    out = torch.func.vmap(lambda b: linalg.cg(lambda v: A @ v, b, maxiter=1, strict=True))(bs)
    assert torch.isnan(out[0]).all()
    torch.testing.assert_close(out[1], torch.zeros(8, dtype=D))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rtol": -1.0}, r"cg: rtol must be >= 0; got -1.0"),
        ({"atol": -1.0}, r"cg: atol must be >= 0"),
        ({"maxiter": -2}, r"cg: maxiter must be a non-negative int"),
    ],
)
def test_cg_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        linalg.cg(lambda v: v, torch.ones(2, dtype=D), **kwargs)


def test_cg_bad_trees() -> None:
    with pytest.raises(TypeError, match="cg: every leaf of b must be a floating-point tensor"):
        linalg.cg(lambda v: v, torch.ones(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="cg: x0 must have the structure and shapes of b"):
        linalg.cg(lambda v: v, {"a": torch.ones(2)}, {"b": torch.ones(2)})
    with pytest.raises(ValueError, match=r"cg: A\(x\) must return the structure of b"):
        linalg.cg(lambda v: [v["a"]], {"a": torch.ones(2)})


def test_normalize_matvec_errors() -> None:
    with pytest.raises(ValueError, match="must hold square matrices; got shape"):
        normalize_matvec(torch.ones(2, 3))
    with pytest.raises(TypeError, match="must be callable or a tree of square matrices"):
        normalize_matvec({"a": 1.0})
    with pytest.raises(ValueError, match="x has 2 leaves but the operator has 1 blocks"):
        normalize_matvec([torch.eye(2)])([torch.ones(2), torch.ones(2)])
    assert cat_shapes({"a": torch.zeros(2, 3), "b": torch.zeros(())}) == (2, 3)


def test_bicgstab_nonsymmetric(seed: int) -> None:
    A = torch.randn(10, 10, dtype=D) + 6 * torch.eye(10, dtype=D)
    b = {"x": torch.randn(10, dtype=D)}
    x = linalg.bicgstab(lambda v: {"x": A @ v["x"]}, b, rtol=1e-13)
    torch.testing.assert_close(x["x"], torch.linalg.solve(A, b["x"]), rtol=1e-10, atol=1e-12)
    M = torch.diag(1.0 / torch.diagonal(A))
    xm = linalg.bicgstab(lambda v: A @ v, b["x"], torch.ones(10, dtype=D), rtol=1e-13, M=M)
    torch.testing.assert_close(xm, torch.linalg.solve(A, b["x"]), rtol=1e-10, atol=1e-12)
    with pytest.raises(linalg.ConvergenceError, match="bicgstab: did not converge"):
        linalg.bicgstab(lambda v: A @ v, b["x"], maxiter=1, strict=True)


def test_ns_and_ns_inv_match_series_limit() -> None:
    A = torch.tensor([[0.6, 0.1], [0.2, 0.7]], dtype=D)
    b = torch.tensor([1.0, -1.0], dtype=D)
    exact, inv = torch.linalg.solve(A, b), torch.linalg.inv(A)
    torch.testing.assert_close(linalg.ns(lambda v: A @ v, b, 200), exact, rtol=1e-12, atol=0)
    torch.testing.assert_close(linalg.ns(A, b, 200, alpha=0.9), exact, rtol=1e-12, atol=0)
    torch.testing.assert_close(linalg.ns_inv(A, 200), inv, rtol=1e-12, atol=0)
    torch.testing.assert_close(linalg.ns_inv({"m": A}, 200, alpha=0.9)["m"], inv)
    # A truncated series is exactly the partial sum: K=1 gives b + (I - A) b.
    torch.testing.assert_close(linalg.ns(A, b, 1), b + (b - A @ b))
    with pytest.raises(ValueError, match="ns_inv: A must hold square matrices"):
        linalg.ns_inv(torch.ones(2, 3))
    with pytest.raises(ValueError, match="ns: alpha must be > 0"):
        linalg.ns(A, b, 3, alpha=0.0)
    with pytest.raises(ValueError, match="ns: maxiter must be a non-negative int"):
        linalg.ns(A, b, -1)
