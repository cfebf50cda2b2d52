"""Hypergradient diagnostics, linear-solve infos and the non-convergence policy (float64)."""

from __future__ import annotations

import math

import pytest
import torch

import torchopt_lite
from torchopt_lite import linalg, linear_solve
from torchopt_lite.diff.implicit import HypergradientReport, check_hypergradient, custom_root
from torchopt_lite.linalg import ConvergenceError, ConvergenceWarning, SolveInfo, record_solves

from ._ridge import D, N, P, ridge_closed_form, ridge_optimality


def validation_loss(Xv, yv):
    def outer(w, lam, X, y):
        return 0.5 * (Xv @ w - yv).square().sum()

    return outer


def closed_form(w, lam, X, y):
    return ridge_closed_form(lam, X, y)


def gd(steps):
    def solver(w, lam, X, y):
        step = 1.0 / (torch.linalg.matrix_norm(X, 2) ** 2 + lam)
        for _ in range(steps):
            w = w - step * ridge_optimality(w, lam, X, y)
        return w

    return solver


def with_singular_values(s, seed_offset=0):
    """An N x P design with the given singular values (seeded orthogonal factors)."""
    g = torch.Generator().manual_seed(1 + seed_offset)
    U, _ = torch.linalg.qr(torch.randn(N, P, generator=g, dtype=D))
    V, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=D))
    return U @ torch.diag(torch.as_tensor(s, dtype=D)) @ V.T


def ridge_matrix(lam, X):
    return X.T @ X + lam * torch.eye(P, dtype=D)


# ---------------------------------------------------------------------------------------------
# check_hypergradient


@pytest.mark.parametrize(
    ("argnums", "fd_directions"), [(1, None), ((1, 2), None), ((1, 2), 5)], ids=str
)
def test_ridge_closed_form_agrees_and_estimates_the_condition(data, argnums, fd_directions) -> None:
    X, y = data
    X = X @ torch.diag(torch.tensor([1.0, 3.0, 0.3, 10.0], dtype=D))  # cond(A) in the hundreds
    Xv, yv = torch.randn(N, P, dtype=D), torch.randn(N, dtype=D)
    lam = torch.tensor(0.7, dtype=D)
    report = check_hypergradient(
        validation_loss(Xv, yv),
        closed_form,
        torch.zeros(P, dtype=D),
        lam,
        X,
        y,
        optimality_fn=ridge_optimality,
        argnums=argnums,
        solve=linear_solve.solve_cg(rtol=1e-12),
        fd_directions=fd_directions,
    )
    assert isinstance(report, HypergradientReport)
    assert report.ok, report.warnings
    assert set(report.agreement) == {
        ("implicit", "unrolled"),
        ("implicit", "finite_difference"),
        ("unrolled", "finite_difference"),
    }
    assert max(report.agreement.values()) < 1e-6
    # The implicit hypergradient is the closed form's.
    n = 1 if argnums == 1 else 1 + N * P
    ref = torch.func.grad(
        lambda lam, X: validation_loss(Xv, yv)(ridge_closed_form(lam, X, y), lam, X, y),
        argnums=(0, 1),
    )(lam, X)
    ref_flat = torch.cat([ref[0].reshape(1), ref[1].reshape(-1)])[:n]
    assert report.implicit is not None
    torch.testing.assert_close(report.implicit, ref_flat, rtol=1e-9, atol=1e-12)
    assert report.directions.shape == ((1, 1) if n == 1 else (n, fd_directions or 3))
    # The condition estimate, against the true cond(A) of the symmetric A = X^T X + lam I.
    true_cond = float(torch.linalg.cond(ridge_matrix(lam, X)))
    assert true_cond > 100
    assert abs(report.condition - true_cond) <= 0.1 * true_cond
    assert report.condition_operator == "A"
    # The linear solve: CG on P unknowns, converged, its residual below the asked rtol.
    info = report.solve_info
    assert info is not None and info.solver == "cg" and bool(info.converged)
    assert 1 <= int(info.iterations) <= P + 1
    assert float(info.residual) <= 1e-12
    assert report.optimality_residual < 1e-10
    text = str(report)
    assert "implicit vs finite_difference" in text and "warnings:" in text and "none" in text


def test_under_solved_inner_problem_is_flagged(data) -> None:
    X, y = data
    Xv, yv = torch.randn(N, P, dtype=D), torch.randn(N, dtype=D)
    lam = torch.tensor(0.7, dtype=D)
    report = check_hypergradient(
        validation_loss(Xv, yv),
        gd(5),  # 5 gradient steps: far from the minimiser
        torch.zeros(P, dtype=D),
        lam,
        X,
        y,
        optimality_fn=ridge_optimality,
        solve=linear_solve.solve_cg(rtol=1e-12),
    )
    assert not report.ok
    assert report.relative_optimality_residual > 1e-3
    assert report.agreement[("implicit", "finite_difference")] > 1e-3
    assert report.agreement[("implicit", "unrolled")] > 1e-3
    # Unrolling and finite differences differentiate the same truncated solver.
    assert report.agreement[("unrolled", "finite_difference")] < 1e-6
    text = "\n".join(report.warnings)
    assert "the inner problem is not solved: optimality residual" in text
    assert "implicit and finite_difference disagree" in text
    assert "unrolled and finite_difference" not in text
    assert "the inner problem is not solved" in str(report)


def test_a_converged_iterative_inner_solver_agrees(data) -> None:
    X, y = data
    report = check_hypergradient(
        validation_loss(torch.randn(N, P, dtype=D), torch.randn(N, dtype=D)),
        custom_root(ridge_optimality, argnums=1)(gd(2000)),  # decorated: re-decorated inside
        torch.zeros(P, dtype=D),
        torch.tensor(0.7, dtype=D),
        X,
        y,
        optimality_fn=ridge_optimality,
        solve=linear_solve.solve_normal_cg(rtol=1e-13),
    )
    assert report.ok, report.warnings
    assert report.agreement[("implicit", "unrolled")] < 1e-9
    assert report.agreement[("implicit", "finite_difference")] < 1e-6
    assert report.solve_info is not None and report.solve_info.solver == "normal_cg"


def test_a_torchopt_lite_optimizer_loop_is_unrolled(data) -> None:
    X, y = data

    def fit(w, lam, X, y):  # out-of-place Adam steps: differentiable by autograd
        opt = torchopt_lite.adam(lr=0.05)
        state = opt.init(w)
        for _ in range(600):
            updates, state = opt.update(ridge_optimality(w, lam, X, y), state, inplace=False)
            w = torchopt_lite.apply_updates(w, updates, inplace=False)
        return w

    report = check_hypergradient(
        lambda w, lam, X, y: w.square().sum(),
        fit,
        torch.zeros(P, dtype=D),
        torch.tensor(0.7, dtype=D),
        X,
        y,
        optimality_fn=ridge_optimality,
        solve=linear_solve.solve_cg(rtol=1e-12),
    )
    assert report.ok, report.warnings
    assert report.unrolled is not None
    assert max(report.agreement.values()) < 1e-8


def test_ill_conditioned_problem_has_a_large_condition_estimate() -> None:
    X = with_singular_values([1.0, 1e-1, 1e-3, 1e-4])
    y = torch.randn(N, dtype=D, generator=torch.Generator().manual_seed(3))
    lam = torch.tensor(1e-10, dtype=D)
    report = check_hypergradient(
        validation_loss(X, y),
        closed_form,
        torch.zeros(P, dtype=D),
        lam,
        X,
        y,
        optimality_fn=ridge_optimality,
        solve=linear_solve.solve_inv(),
    )
    true_cond = float(torch.linalg.cond(ridge_matrix(lam, X)))
    assert true_cond > 1 / math.sqrt(torch.finfo(D).eps)  # the warning's threshold
    assert abs(report.condition - true_cond) <= 0.1 * true_cond
    assert any("ill-conditioned: cond(A) ~" in w for w in report.warnings)
    assert report.solve_info is not None and report.solve_info.solver == "inv"


def test_condition_of_a_nonsymmetric_system_uses_the_normal_operator(seed: int) -> None:
    B = torch.randn(P, P, dtype=D) + 3 * torch.eye(P, dtype=D)

    def F(x, theta):
        return B @ x - theta

    def solver(x, theta):
        return torch.linalg.solve(B, theta)

    report = check_hypergradient(
        lambda x, theta: x.square().sum(),
        solver,
        torch.zeros(P, dtype=D),
        torch.randn(P, dtype=D),
        optimality_fn=F,
        solve=linear_solve.solve_bicgstab(rtol=1e-12),
    )
    assert report.condition_operator == "A^T A"
    true_cond = float(torch.linalg.cond(B))
    assert abs(report.condition - true_cond) <= 0.1 * true_cond
    assert report.ok, report.warnings
    assert report.solve_info is not None and report.solve_info.solver == "bicgstab"


def test_unrolled_is_reported_unavailable_or_taken_from_unroll(data) -> None:
    X, y = data
    args = (torch.zeros(P, dtype=D), torch.tensor(0.7, dtype=D), X, y)
    outer = validation_loss(X, y)

    def opaque(w, lam, X, y):  # no autograd graph (an external solver, say)
        with torch.no_grad():
            return ridge_closed_form(lam, X, y)

    report = check_hypergradient(outer, opaque, *args, optimality_fn=ridge_optimality)
    assert report.unrolled is None
    assert "no autograd graph" in report.unavailable["unrolled"]
    assert ("implicit", "unrolled") not in report.agreement
    assert "unrolled:" in str(report)
    assert report.ok, report.warnings
    report = check_hypergradient(
        outer, opaque, *args, optimality_fn=ridge_optimality, unroll=closed_form
    )
    assert report.unrolled is not None and report.agreement[("implicit", "unrolled")] < 1e-6
    report = check_hypergradient(outer, opaque, *args, optimality_fn=ridge_optimality, unroll=False)
    assert report.unavailable["unrolled"] == "unroll=False"


def test_a_failing_linear_solve_is_reported(data) -> None:
    X, y = data
    report = check_hypergradient(
        validation_loss(X, y),
        closed_form,
        torch.zeros(P, dtype=D),
        torch.tensor(0.7, dtype=D),
        X,
        y,
        optimality_fn=ridge_optimality,
        solve=linear_solve.solve_cg(maxiter=1, on_nonconvergence="raise"),
    )
    assert report.implicit is None
    assert report.unavailable["implicit"] == "the linear solve did not converge"
    assert any("cg: did not converge in maxiter=1" in w for w in report.warnings)
    assert report.solve_info is not None and not bool(report.solve_info.converged)
    assert int(report.solve_info.iterations) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"argnums": 0}, ValueError, "check_hypergradient: argnums counts"),
        ({"argnums": 4}, ValueError, r"argnums \(4,\) is out of range"),
        ({"unroll": 3}, TypeError, "unroll must be a bool or a solver"),
        ({"fd_directions": 0}, ValueError, "fd_directions must be a positive int"),
        ({"fd_step": 0.0}, ValueError, "fd_step must be > 0"),
        ({"condition_iters": 0}, ValueError, "condition_iters must be a positive int"),
    ],
)
def test_bad_arguments(data, kwargs, error, match) -> None:
    X, y = data
    with pytest.raises(error, match=match):
        check_hypergradient(
            validation_loss(X, y),
            closed_form,
            torch.zeros(P, dtype=D),
            torch.tensor(0.7, dtype=D),
            X,
            y,
            optimality_fn=ridge_optimality,
            **kwargs,
        )


def test_bad_hyperparameters_and_outer_loss(data) -> None:
    X, y = data
    w0 = torch.zeros(P, dtype=D)
    with pytest.raises(TypeError, match="argument 1 is in argnums, so its leaves must be real"):
        check_hypergradient(
            validation_loss(X, y), closed_form, w0, 1, X, y, optimality_fn=ridge_optimality
        )
    with pytest.raises(ValueError, match=r"the arguments at argnums \(1,\) hold no tensors"):
        check_hypergradient(
            lambda w, t: w.sum(), lambda w, t: w, w0, (), optimality_fn=lambda w, t: w
        )
    with pytest.raises(ValueError, match=r"outer_loss must return a scalar tensor; got \(4,\)"):
        check_hypergradient(
            lambda w, lam, X, y: w,
            closed_form,
            w0,
            torch.tensor(0.7, dtype=D),
            X,
            y,
            optimality_fn=ridge_optimality,
        )


# ---------------------------------------------------------------------------------------------
# SolveInfo: the reported residual is the residual of the returned solution


def spd(n, seed_offset=0):
    g = torch.Generator().manual_seed(10 + seed_offset)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D))
    return Q @ torch.diag(torch.logspace(0, 3, n, dtype=D)) @ Q.T, torch.randn(
        n, generator=g, dtype=D
    )


def direct_residual(A, x, b):
    return torch.linalg.vector_norm(b - A @ x) / torch.linalg.vector_norm(b)


@pytest.mark.parametrize("maxiter", [3, None])
def test_cg_and_bicgstab_info_match_the_direct_residual(maxiter) -> None:
    A, b = spd(8)
    B = A + torch.triu(torch.ones(8, 8, dtype=D), 1)  # non-symmetric
    for name, fn, M in [("cg", linalg.cg, A), ("bicgstab", linalg.bicgstab, B)]:
        infos: list[SolveInfo] = []
        x = fn(lambda v, M=M: M @ v, b, maxiter=maxiter, rtol=1e-10, info=infos.append)
        (info,) = infos
        assert info.solver == name
        torch.testing.assert_close(info.residual, direct_residual(M, x, b), rtol=1e-10, atol=0)
        if maxiter is None:
            assert bool(info.converged) and float(info.residual) <= 1e-10 * (1 + 1e-6)
            assert 1 <= int(info.iterations) < 8 * 10
        else:
            assert not bool(info.converged) and int(info.iterations) == maxiter
            assert float(info.residual) > 1e-6
        assert name in str(info) and "iterations" in str(info)


@pytest.mark.parametrize("ridge", [None, 0.5])
def test_normal_cg_info_is_the_normal_equations_residual(ridge) -> None:
    A, b = spd(6)
    A = A + torch.triu(torch.ones(6, 6, dtype=D), 1)
    infos: list[SolveInfo] = []
    solve = linear_solve.solve_normal_cg(ridge=ridge, maxiter=4, info=infos.append)
    x = solve(lambda v: A @ v, b)
    normal = A.T @ A + (ridge or 0.0) * torch.eye(6, dtype=D)
    (info,) = infos
    assert info.solver == "normal_cg" and int(info.iterations) == 4
    torch.testing.assert_close(
        info.residual, direct_residual(normal, x, A.T @ b), rtol=1e-9, atol=0
    )


def test_solve_inv_and_neumann_infos() -> None:
    A, b = spd(5)
    infos: list[SolveInfo] = []
    x = linear_solve.solve_inv(ridge=1.0, info=infos.append)(lambda v: A @ v, b)
    A1 = A + torch.eye(5, dtype=D)
    assert infos[-1].solver == "inv" and int(infos[-1].iterations) == 0
    assert infos[-1].converged is None
    torch.testing.assert_close(infos[-1].residual, direct_residual(A1, x, b), rtol=1e-6, atol=1e-15)
    C = A / (2 * torch.linalg.matrix_norm(A, 2))  # spectrum in (0, 1/2]: the series converges
    x = linear_solve.solve_inv(ns=True, maxiter=7, info=infos.append)(lambda v: C @ v, b)
    assert infos[-1].solver == "ns" and int(infos[-1].iterations) == 7
    torch.testing.assert_close(infos[-1].residual, direct_residual(C, x, b), rtol=1e-10, atol=0)
    assert "ns: 7 iterations" in str(infos[-1])


def test_record_solves_collects_the_backward_solve_of_custom_root(data) -> None:
    X, y = data
    seen: list[SolveInfo] = []
    solve = linear_solve.solve_cg(rtol=1e-12, info=seen.append)
    solver = custom_root(ridge_optimality, argnums=1, solve=solve)(closed_form)
    lam = torch.tensor(0.7, dtype=D, requires_grad=True)
    with record_solves() as outer, record_solves() as inner:
        solver(torch.zeros(P, dtype=D), lam, X, y).sum().backward()
    assert len(seen) == 1 and outer == seen and inner == seen  # nested blocks all see it
    info = seen[-1]
    assert info.solver == "cg" and bool(info.converged) and float(info.residual) <= 1e-12
    with record_solves() as after:
        pass
    assert after == []  # closed blocks no longer record
    linalg.cg(lambda v: v, torch.ones(2, dtype=D))
    assert len(outer) == 1


def test_no_info_under_vmap() -> None:
    A, b = spd(4)
    seen: list[SolveInfo] = []
    with record_solves() as infos:
        torch.func.vmap(lambda bi: linalg.cg(lambda v: A @ v, bi, info=seen.append))(
            torch.stack([b, 2 * b])
        )
    assert infos == [] and seen == []


# ---------------------------------------------------------------------------------------------
# on_nonconvergence


HARD, B2 = spd(6)  # eigenvalues 1 ... 1e3: two steps are far from enough


@pytest.mark.parametrize("name", ["cg", "bicgstab"])
def test_linalg_on_nonconvergence(name) -> None:
    fn = getattr(linalg, name)

    def mv(v):
        return HARD @ v

    with pytest.raises(ConvergenceError, match=f"{name}: did not converge in maxiter=2"):
        fn(mv, B2, maxiter=2, on_nonconvergence="raise")
    with pytest.warns(ConvergenceWarning, match=f"{name}: did not converge in maxiter=2"):
        warned = fn(mv, B2, maxiter=2, on_nonconvergence="warn")
    ignored = fn(mv, B2, maxiter=2, on_nonconvergence="ignore")
    torch.testing.assert_close(warned, ignored, rtol=0, atol=0)
    assert torch.isfinite(ignored).all()
    with pytest.raises(ValueError, match="on_nonconvergence must be one of"):
        fn(mv, B2, on_nonconvergence="loud")
    with pytest.raises(ValueError, match="pass either strict or on_nonconvergence, not both"):
        fn(mv, B2, strict=True, on_nonconvergence="warn")


def test_on_nonconvergence_under_vmap() -> None:
    bs = torch.stack([B2, 2 * B2])

    def run(policy):
        return torch.func.vmap(
            lambda b: linalg.cg(lambda v: HARD @ v, b, maxiter=5, on_nonconvergence=policy)
        )(bs)

    assert torch.isnan(run("raise")).all()  # values cannot raise under a transform
    torch.testing.assert_close(run("warn"), run("ignore"), rtol=0, atol=0)
    assert torch.isfinite(run("warn")).all()


@pytest.mark.parametrize(
    ("factory", "label"),
    [
        (linear_solve.solve_cg, "cg"),
        (linear_solve.solve_bicgstab, "bicgstab"),
        (linear_solve.solve_normal_cg, "normal_cg"),
    ],
)
def test_factories_on_nonconvergence(factory, label) -> None:
    def mv(v):
        return HARD @ v

    with pytest.raises(ConvergenceError, match=f"{label}: did not converge"):
        factory(on_nonconvergence="raise", maxiter=5)(mv, B2)
    with pytest.warns(ConvergenceWarning, match=f"{label}: did not converge in maxiter=5"):
        factory(on_nonconvergence="warn", maxiter=5)(mv, B2)
    assert torch.isfinite(factory(on_nonconvergence="ignore", maxiter=5)(mv, B2)).all()
    with pytest.raises(ValueError, match=f"solve_{label}: on_nonconvergence must be one of"):
        factory(on_nonconvergence="sometimes")
    with pytest.raises(ValueError, match=f"solve_{label}: pass either strict or"):
        factory(strict=False, on_nonconvergence="ignore")


def test_custom_root_backward_warns_with_a_warning_solver(data) -> None:
    X, y = data
    solve = linear_solve.solve_cg(maxiter=1, on_nonconvergence="warn")
    solver = custom_root(ridge_optimality, argnums=1, solve=solve)(closed_form)
    lam = torch.tensor(0.7, dtype=D, requires_grad=True)
    with pytest.warns(ConvergenceWarning, match="cg: did not converge in maxiter=1"):
        (g,) = torch.autograd.grad(solver(torch.zeros(P, dtype=D), lam, X, y).sum(), lam)
    assert math.isfinite(float(g))
