"""Nystrom-preconditioned CG and the first-order (identity) solve vs closed forms (float64)."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite import linalg, linear_solve
from torchopt_lite.diff.implicit import custom_root
from torchopt_lite.linalg import nystrom, nystrom_precond

from ._ridge import D, P, ridge_closed_form, ridge_optimality


def _decaying_psd(n: int, low: float) -> torch.Tensor:
    """A random-basis PSD matrix with eigenvalues log-spaced from 1 down to ``low``."""
    Q, _ = torch.linalg.qr(torch.randn(n, n, dtype=D))
    return (
        Q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(low)).item(), n, dtype=D)) @ Q.T
    )


def _ridge_problem(n: int = 80, p: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge data whose Gram matrix has a decaying spectrum (singular values 1 .. 1e-3)."""
    U, _ = torch.linalg.qr(torch.randn(n, p, dtype=D))
    V, _ = torch.linalg.qr(torch.randn(p, p, dtype=D))
    X = U @ torch.diag(torch.logspace(0, -3, p, dtype=D)) @ V.T
    return X, torch.randn(n, dtype=D)


# --- the Nystrom approximation ----------------------------------------------------------------


@pytest.mark.parametrize("rank", [5, 8, 30, 50])
def test_nystrom_is_exact_at_true_rank(rank: int, seed: int) -> None:
    G = torch.randn(30, 5, dtype=D)
    A = G @ G.T  # rank 5; rank=50 is clamped to n = 30
    U, lam = nystrom(lambda v: A @ v, torch.zeros(30, dtype=D), rank, seed=seed)
    assert U.shape == (30, min(rank, 30))
    torch.testing.assert_close(U @ torch.diag(lam) @ U.T, A, rtol=0, atol=1e-10 * A.norm())
    torch.testing.assert_close(U.T @ U, torch.eye(U.shape[1], dtype=D), rtol=0, atol=1e-12)


def test_nystrom_over_a_tree_with_coupled_leaves(seed: int) -> None:
    G = torch.randn(7, 3, dtype=D)
    A = G @ G.T  # couples the leaves "a" (3 entries) and "b" (2 x 2)

    def matvec(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = A @ torch.cat([t["a"], t["b"].reshape(-1)])
        return {"a": out[:3], "b": out[3:].reshape(2, 2)}

    x = {"a": torch.zeros(3, dtype=D), "b": torch.zeros(2, 2, dtype=D)}
    U, lam = nystrom(matvec, x, 4, seed=seed)
    torch.testing.assert_close(U @ torch.diag(lam) @ U.T, A, rtol=0, atol=1e-10 * A.norm())


def test_nystrom_is_below_a_and_its_eigenvalues_are_the_top_ones(seed: int) -> None:
    A = _decaying_psd(60, 1e-8)
    U, lam = nystrom(lambda v: A @ v, torch.zeros(60, dtype=D), 20)
    # A - A_hat is PSD (the Nystrom approximation never overshoots), and lam_i <= lambda_i(A).
    assert torch.linalg.eigvalsh(A - U @ torch.diag(lam) @ U.T).min() > -1e-12
    top = torch.linalg.eigvalsh(A).flip(0)[:20]
    assert bool((lam <= top + 1e-12).all())
    assert bool((lam[:-1] >= lam[1:]).all())
    # The head is captured up to the tail's size (lambda_21 = 2e-3 here; measured 4e-3 relative).
    torch.testing.assert_close(lam[:3], top[:3], rtol=1e-2, atol=0)


def test_nystrom_is_seeded_and_runs_under_vmap(seed: int) -> None:
    A = _decaying_psd(20, 1e-6)
    x = torch.zeros(20, dtype=D)
    first, again, other = (nystrom(A, x, 6, seed=s) for s in (seed, seed, seed + 1))
    assert torch.equal(first.U, again.U) and torch.equal(first.eigvals, again.eigvals)
    assert not torch.equal(first.U, other.U)
    # No torch random op: vmap needs no randomness flag; each batch sees the same sketch.
    scales = torch.tensor([1.0, 3.0], dtype=D)
    lam = torch.func.vmap(lambda c: nystrom(lambda v: c * (A @ v), x, 6, seed=seed).eigvals)(scales)
    torch.testing.assert_close(lam, scales[:, None] * first.eigvals[None], rtol=1e-10, atol=0)


def test_nystrom_precond_matches_its_formula(seed: int) -> None:
    A = _decaying_psd(30, 1e-6)
    approx = nystrom(A, torch.zeros(30, dtype=D), 10)
    U, lam = approx
    mu = 1e-3
    eye = torch.eye(30, dtype=D)
    expected = (lam[-1] + mu) * U @ torch.diag(1 / (lam + mu)) @ U.T + (eye - U @ U.T)
    got = torch.func.vmap(nystrom_precond(approx, mu))(eye).T
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_nystrom_precond_leaves_zero_directions_alone() -> None:
    approx = linalg.NystromApprox(torch.eye(3, 2, dtype=D), torch.tensor([2.0, 0.0], dtype=D))
    v = torch.tensor([1.0, 1.0, 1.0], dtype=D)
    # floor = 2 (the smallest positive eigenvalue): direction 0 scaled by 2/2, the rest by 1.
    torch.testing.assert_close(nystrom_precond(approx)(v), v, rtol=0, atol=0)
    zero = linalg.NystromApprox(torch.eye(3, 2, dtype=D), torch.zeros(2, dtype=D))
    torch.testing.assert_close(nystrom_precond(zero)(v), v, rtol=0, atol=0)  # P = I


# --- Nystrom-preconditioned CG ----------------------------------------------------------------


def test_nystrom_pcg_takes_fewer_iterations_than_cg(seed: int) -> None:
    n, ridge = 100, 1e-4
    A = _decaying_psd(n, 1e-8)  # kappa(A + ridge I) ~ 1e4
    b = torch.randn(n, dtype=D)
    expected = torch.linalg.solve(A + ridge * torch.eye(n, dtype=D), b)
    infos: list[linalg.SolveInfo] = []
    plain = linear_solve.solve_cg(ridge=ridge, rtol=1e-10, info=infos.append)
    pcg = linear_solve.solve_nystrom_pcg(rank=40, ridge=ridge, rtol=1e-10, info=infos.append)
    for solve in (plain, pcg):
        x = solve(lambda v: A @ v, b)
        # forward error <= kappa * rtol = 1e-6 for a residual below rtol |b|
        assert float((x - expected).norm() / expected.norm()) < 1e-6
    cg_steps, pcg_steps = (int(info.iterations) for info in infos)
    # Measured: 228 CG steps vs 28 PCG steps (+ 40 matvecs for the sketch).
    assert pcg_steps + 40 < cg_steps / 2, (cg_steps, pcg_steps)
    # The same with a budget: PCG reaches the tolerance in 40 steps, plain CG does not.
    linear_solve.solve_nystrom_pcg(rank=40, ridge=ridge, rtol=1e-10, maxiter=40, strict=True)(
        lambda v: A @ v, b
    )
    with pytest.raises(linalg.ConvergenceError, match="did not converge in maxiter=40"):
        linear_solve.solve_cg(ridge=ridge, rtol=1e-10, maxiter=40, strict=True)(lambda v: A @ v, b)


def test_nystrom_pcg_solves_a_tree_and_binds_a_system(seed: int) -> None:
    G = torch.randn(5, 5, dtype=D)
    A = G @ G.T + 0.1 * torch.eye(5, dtype=D)

    def matvec(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = A @ torch.cat([t["w"], t["b"]])
        return {"w": out[:4], "b": out[4:]}

    rhs = torch.randn(5, dtype=D)
    b = {"w": rhs[:4], "b": rhs[4:]}
    expected = torch.linalg.solve(A + 0.5 * torch.eye(5, dtype=D), rhs)
    solve = linear_solve.solve_nystrom_pcg(rank=2, ridge=0.5, rtol=1e-12, matvec=matvec, b=b)
    for x in (solve(), solve(rank=5), solve(matvec, b)):
        torch.testing.assert_close(torch.cat([x["w"], x["b"]]), expected, rtol=1e-10, atol=0)
    assert linear_solve.solve_nystrom_pcg()(lambda v: v, {}) == {}


def test_ridge_hypergradient_with_nystrom_pcg_equals_closed_form(seed: int) -> None:
    X, y = _ridge_problem()
    p = X.shape[1]
    lam = torch.tensor(1e-4, dtype=D)
    # ~50 steps needed (CG: ~120); strict: unconverged raises, or is NaN under jacrev/jacfwd.
    solve = linear_solve.solve_nystrom_pcg(rank=15, rtol=1e-12, maxiter=100, strict=True)
    solver = custom_root(ridge_optimality, argnums=(1, 2), solve=solve)(
        lambda w, lam, X, y: ridge_closed_form_p(lam, X, y)
    )
    w0 = torch.zeros(p, dtype=D)

    def val_loss(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((w - 1.0) ** 2).sum()

    lam_, X_ = lam.clone().requires_grad_(), X.clone().requires_grad_()
    got = torch.autograd.grad(val_loss(solver(w0, lam_, X_, y)), (lam_, X_))
    ref = torch.func.grad(lambda lam, X: val_loss(ridge_closed_form_p(lam, X, y)), (0, 1))(lam, X)
    for g, r in zip(got, ref, strict=True):
        assert float((g - r).norm() / r.norm()) < 1e-8
    # jacrev vmaps the backward solve: the sketch has no torch random op, so it runs.
    jac = torch.func.jacrev(lambda lam: solver(w0, lam, X, y))(lam)
    ref_jac = torch.func.jacrev(ridge_closed_form_p)(lam, X, y)
    assert float((jac - ref_jac).norm() / ref_jac.norm()) < 1e-8
    # Forward mode solves A t = -B v with the same solver (matvec is then a JVP).
    jac_fwd = torch.func.jacfwd(lambda lam: solver(w0, lam, X, y))(lam)
    assert float((jac_fwd - ref_jac).norm() / ref_jac.norm()) < 1e-8


def ridge_closed_form_p(lam: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``ridge_closed_form`` for any number of features."""
    return torch.linalg.solve(X.T @ X + lam * torch.eye(X.shape[1], dtype=D), X.T @ y)


# --- the first-order (identity) solve ---------------------------------------------------------


def test_solve_identity_is_alpha_b_and_never_calls_matvec() -> None:
    def matvec(v: object) -> object:
        raise AssertionError("solve_identity must not call matvec")

    b = {"a": torch.tensor([1.0, -2.0], dtype=D), "b": torch.tensor(3.0, dtype=D)}
    x = linear_solve.solve_identity(alpha=0.25)(matvec, b)
    assert torch.equal(x["a"], torch.tensor([0.25, -0.5], dtype=D))
    assert torch.equal(x["b"], torch.tensor(0.75, dtype=D))
    # The Neumann series with 0 terms is the same approximation.
    ns0 = linear_solve.solve_inv(ns=True, maxiter=0, alpha=0.25)(lambda v: v, b)
    assert torch.equal(ns0["a"], x["a"]) and torch.equal(ns0["b"], x["b"])


@pytest.mark.parametrize("alpha", [0.0, 0.05, 1.0])
def test_first_order_hypergradient_equals_its_formula(alpha: float, data) -> None:
    X, y = data
    lam = torch.tensor(0.7, dtype=D)
    target = torch.ones(P, dtype=D)
    solver = custom_root(
        ridge_optimality, argnums=(1, 2), solve=linear_solve.solve_identity(alpha=alpha)
    )(lambda w, lam, X, y: ridge_closed_form(lam, X, y))
    lam_, X_ = lam.clone().requires_grad_(), X.clone().requires_grad_()
    w = solver(torch.zeros(P, dtype=D), lam_, X_, y)
    got = torch.autograd.grad(0.5 * ((w - target) ** 2).sum(), (lam_, X_))
    # -B^T A^{-T} grad_x L with A^{-1} ~ alpha I is B^T u, u = -alpha (w - t) (L has no direct
    # theta term); for F = X^T (X w - y) + lam w: B_lam = w, and B_X^T u is a VJP of F in X.
    w_star = ridge_closed_form(lam, X, y)
    g = w_star - target
    expected_lam = -alpha * torch.dot(w_star, g)
    Xr = X.clone().requires_grad_()
    (expected_X,) = torch.autograd.grad(ridge_optimality(w_star, lam, Xr, y), Xr, -alpha * g)
    torch.testing.assert_close(got[0], expected_lam, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got[1], expected_X, rtol=1e-12, atol=1e-14)
    # Closed form of B_X^T u for u = -alpha g: (X w - y) u^T + X u w^T.
    u = -alpha * g
    closed = torch.outer(X @ w_star - y, u) + torch.outer(X @ u, w_star)
    torch.testing.assert_close(got[1], closed, rtol=1e-12, atol=1e-14)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [0, -3, 2.5, True])
def test_rank_must_be_a_positive_int(rank) -> None:
    with pytest.raises(ValueError, match="solve_nystrom_pcg: rank must be a positive int"):
        linear_solve.solve_nystrom_pcg(rank=rank)
    with pytest.raises(ValueError, match="nystrom: rank must be a positive int"):
        nystrom(torch.eye(3, dtype=D), torch.zeros(3, dtype=D), rank)


@pytest.mark.parametrize("seed_value", [-1, 1.5, None])
def test_seed_must_be_a_non_negative_int(seed_value) -> None:
    with pytest.raises(ValueError, match="solve_nystrom_pcg: seed must be a non-negative int"):
        linear_solve.solve_nystrom_pcg(seed=seed_value)
    with pytest.raises(ValueError, match="nystrom: seed must be a non-negative int"):
        nystrom(torch.eye(3, dtype=D), torch.zeros(3, dtype=D), 2, seed=seed_value)


def test_nystrom_pcg_validates_its_krylov_options() -> None:
    with pytest.raises(ValueError, match="solve_nystrom_pcg: ridge must be >= 0"):
        linear_solve.solve_nystrom_pcg(ridge=-1.0)
    with pytest.raises(ValueError, match="solve_nystrom_pcg: rtol must be >= 0"):
        linear_solve.solve_nystrom_pcg(rtol=-1.0)


def test_nystrom_rejects_an_indefinite_operator() -> None:
    with pytest.raises(ValueError, match="nystrom: A must be symmetric positive semi-definite"):
        nystrom(lambda v: -v, torch.zeros(4, dtype=D), 2)
    with pytest.raises(ValueError, match="nystrom: A must be symmetric positive semi-definite"):
        linear_solve.solve_nystrom_pcg(rank=2)(lambda v: -v, torch.ones(4, dtype=D))


def test_nystrom_precond_rejects_a_negative_shift() -> None:
    approx = linalg.NystromApprox(torch.eye(2, dtype=D), torch.ones(2, dtype=D))
    with pytest.raises(ValueError, match=r"nystrom_precond: mu must be >= 0; got -1\.0"):
        nystrom_precond(approx, -1.0)


@pytest.mark.parametrize("alpha", [-0.1, float("nan")])
def test_solve_identity_rejects_a_negative_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="solve_identity: alpha must be >= 0"):
        linear_solve.solve_identity(alpha=alpha)
