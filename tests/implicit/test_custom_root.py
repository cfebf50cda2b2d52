"""custom_root / custom_fixed_point against closed forms, unrolled autograd and loops (float64)."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite import linalg, linear_solve
from torchopt_lite.diff.implicit import custom_fixed_point, custom_root

from ._ridge import D, N, P, ridge_closed_form, ridge_optimality


def ridge_gd(w, lam, X, y):
    """Plain gradient descent run to convergence (the solver is never differentiated)."""
    step = 1.0 / (torch.linalg.matrix_norm(X, 2) ** 2 + lam)
    for _ in range(3000):
        w = w - step * ridge_optimality(w, lam, X, y)
    return w


SOLVERS = {
    "cg": linear_solve.solve_cg(rtol=1e-13),
    "normal_cg": linear_solve.solve_normal_cg(rtol=1e-14),
    "inv": linear_solve.solve_inv(),
    "bicgstab": linear_solve.solve_bicgstab(rtol=1e-13),
    "cg_ridge0": linear_solve.solve_cg(ridge=0.0, rtol=1e-13, maxiter=200),
}


@pytest.mark.parametrize("name", list(SOLVERS))
def test_ridge_hypergradient_equals_closed_form(name: str, data) -> None:
    X, y = data
    lam = torch.tensor(0.7, dtype=D)
    solver = custom_root(ridge_optimality, argnums=(1, 2), solve=SOLVERS[name])(ridge_gd)
    w0 = torch.zeros(P, dtype=D)
    jac = torch.func.jacrev(lambda lam, X: solver(w0, lam, X, y), argnums=(0, 1))(lam, X)
    ref = torch.func.jacrev(ridge_closed_form, argnums=(0, 1))(lam, X, y)
    torch.testing.assert_close(jac[0], ref[0], rtol=0, atol=1e-8)
    torch.testing.assert_close(jac[1], ref[1], rtol=0, atol=1e-8)
    # The same through plain autograd (a validation loss).
    lam_, X_ = lam.clone().requires_grad_(), X.clone().requires_grad_()
    loss = (solver(w0, lam_, X_, y) ** 2).sum()
    g = torch.autograd.grad(loss, (lam_, X_))
    g_ref = torch.func.grad(lambda lam, X: (ridge_closed_form(lam, X, y) ** 2).sum(), (0, 1))(
        lam, X
    )
    torch.testing.assert_close(g[0], g_ref[0], rtol=0, atol=1e-8)
    torch.testing.assert_close(g[1], g_ref[1], rtol=0, atol=1e-8)


def test_neumann_solver_on_a_contractive_system(data) -> None:
    X, y = data
    X = X / torch.linalg.matrix_norm(X, 2)  # spectrum of X^T X + lam I in [lam, 1 + lam]
    lam = torch.tensor(0.5, dtype=D)
    solver = custom_root(
        ridge_optimality, argnums=1, solve=linear_solve.solve_inv(ns=True, maxiter=200, alpha=0.9)
    )(lambda w, lam, X, y: ridge_closed_form(lam, X, y))
    got = torch.func.jacrev(lambda lam: solver(torch.zeros(P, dtype=D), lam, X, y))(lam)
    ref = torch.func.jacrev(ridge_closed_form)(lam, X, y)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-8)


def test_agrees_with_unrolled_differentiation(data) -> None:
    """Strongly convex logistic regression: implicit == autograd through 3000 GD steps."""
    X, y = data
    labels = (y > 0).to(D)

    def grad_f(w, lam):
        return X.T @ (torch.sigmoid(X @ w) - labels) / N + lam * w

    def gd(w, lam):
        for _ in range(3000):
            w = w - 1.0 * grad_f(w, lam)
        return w

    lam = torch.tensor(0.3, dtype=D, requires_grad=True)
    w0 = torch.zeros(P, dtype=D)
    implicit = torch.autograd.grad(custom_root(grad_f, argnums=1)(gd)(w0, lam).sum(), lam)[0]
    unrolled = torch.autograd.grad(gd(w0, lam).sum(), lam)[0]
    # GD contracts by <= 1 - lam per step, so 3000 steps leave ~1e-300 of the initial error.
    torch.testing.assert_close(implicit, unrolled, rtol=1e-9, atol=1e-12)


def test_vmap_over_inner_problems_equals_loop(data) -> None:
    X, y = data
    lams = torch.tensor([0.1, 0.5, 2.0], dtype=D)
    solver = custom_root(ridge_optimality, argnums=1, solve=linear_solve.solve_cg(rtol=1e-13))(
        lambda w, lam, X, y: ridge_closed_form(lam, X, y)
    )
    w0 = torch.zeros(P, dtype=D)

    def loss(lam):
        return (solver(w0, lam, X, y) ** 2).sum()

    batched = torch.func.vmap(torch.func.grad(loss))(lams)
    looped = torch.stack([torch.func.grad(loss)(lam) for lam in lams])
    ref = torch.stack(
        [torch.func.grad(lambda t: (ridge_closed_form(t, X, y) ** 2).sum())(t) for t in lams]
    )
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(batched, ref, rtol=0, atol=1e-8)
    # vmap over a batch of data sets too (the solver itself is vmapped).
    Xs, ys = torch.stack([X, 2 * X]), torch.stack([y, -y])
    lam = torch.tensor(0.4, dtype=D)
    solver = custom_root(ridge_optimality, argnums=(1, 2), solve=linear_solve.solve_cg(rtol=1e-13))(
        lambda w, lam, X, y: ridge_closed_form(lam, X, y)
    )
    jac = torch.func.vmap(torch.func.jacrev(lambda X, y: solver(w0, lam, X, y)))(Xs, ys)
    jac_ref = torch.stack(
        [
            torch.func.jacrev(ridge_closed_form, 1)(lam, Xi, yi)
            for Xi, yi in zip(Xs, ys, strict=True)
        ]
    )
    torch.testing.assert_close(jac, jac_ref, rtol=0, atol=1e-8)


def test_scalar_solution_gets_the_right_derivative() -> None:
    """x* = theta^(1/3) solves x^3 - theta = 0; dx*/dtheta = theta^(-2/3) / 3 (upstream #222)."""
    solver = custom_root(lambda x, t: x**3 - t, argnums=1, solve=linear_solve.solve_cg())(
        lambda x, t: t ** (1.0 / 3.0)
    )
    theta = torch.tensor(8.0, dtype=D, requires_grad=True)
    (g,) = torch.autograd.grad(solver(torch.tensor(1.0, dtype=D), theta), theta)
    torch.testing.assert_close(g, torch.tensor(1.0 / 12.0, dtype=D), rtol=1e-12, atol=0)
    g2 = torch.func.grad(lambda t: solver(torch.tensor(1.0, dtype=D), t))(theta.detach())
    torch.testing.assert_close(g2, torch.tensor(1.0 / 12.0, dtype=D), rtol=1e-12, atol=0)


def test_trees_keywords_and_aux(data) -> None:
    """Dict solution, dict differentiated arg, keyword args and aux output."""
    X, y = data

    def optimality(sol, hp, X, y, *, shift):
        return {
            "w": X.T @ (X @ sol["w"] + sol["b"] - y) + hp["lam"] * sol["w"],
            "b": (X @ sol["w"] + sol["b"] - y).sum() + hp["mu"] * (sol["b"] - shift),
        }

    def closed(hp, X, y, shift):
        Z = torch.cat([X, torch.ones(N, 1, dtype=D)], 1)
        reg = torch.diag(torch.cat([hp["lam"].expand(P), hp["mu"].reshape(1)]))
        v = torch.linalg.solve(
            Z.T @ Z + reg,
            Z.T @ y + torch.cat([torch.zeros(P, dtype=D), hp["mu"].reshape(1) * shift]),
        )
        return {"w": v[:P], "b": v[P]}

    @custom_root(optimality, argnums=1, has_aux=True, solve=linear_solve.solve_cg(rtol=1e-13))
    def solver(sol, hp, X, y, *, shift):
        return closed(hp, X, y, shift), "aux-data"

    hp = {"lam": torch.tensor(0.5, dtype=D), "mu": torch.tensor(2.0, dtype=D)}
    init = {"w": torch.zeros(P, dtype=D), "b": torch.zeros((), dtype=D)}

    def val(hp):
        sol, aux = solver(init, hp, X, y, shift=torch.tensor(1.5, dtype=D))
        assert aux == "aux-data"
        return (sol["w"] ** 2).sum() + sol["b"] ** 2

    got = torch.func.grad(val)(hp)
    ref = torch.func.grad(
        lambda hp: sum((v**2).sum() for v in closed(hp, X, y, torch.tensor(1.5, dtype=D)).values())
    )(hp)
    for k in hp:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-8)


def test_custom_fixed_point_matches_closed_form() -> None:
    """x = 0.5 tanh(x) + theta (a contraction); dx*/dtheta = 1 / (1 - 0.5 sech^2 x*)."""

    def T(x, theta):
        return 0.5 * torch.tanh(x) + theta

    def iterate(x, theta):
        for _ in range(200):
            x = T(x, theta)
        return x

    theta = torch.tensor([0.3, -1.0], dtype=D, requires_grad=True)
    x0 = torch.zeros(2, dtype=D)
    for solve in (None, linear_solve.solve_bicgstab(rtol=1e-13)):
        solver = custom_fixed_point(T, argnums=1, solve=solve)(iterate)
        x = solver(x0, theta)
        (g,) = torch.autograd.grad(x.sum(), theta)
        ref = 1.0 / (1.0 - 0.5 / torch.cosh(x.detach()) ** 2)
        torch.testing.assert_close(g, ref, rtol=1e-9, atol=0)


def test_operands_without_grad_give_a_detached_solution(data) -> None:
    X, y = data
    solver = custom_root(ridge_optimality, argnums=1)(
        lambda w, lam, X, y: ridge_closed_form(lam, X, y)
    )
    lam = torch.tensor(0.5, dtype=D)  # does not require grad: no graph is recorded
    out = solver(torch.zeros(P, dtype=D), lam, X, y)
    torch.testing.assert_close(out, ridge_closed_form(lam, X, y))
    assert out.grad_fn is None


def test_second_order_backward_and_unused_arguments(data) -> None:
    """create_graph=True differentiates the implicit gradient again (closed-form Hessian); the
    first-order eager backward (one graph of F) gives the same gradient; a differentiated
    argument that F ignores gets a zero gradient, not an error."""
    X, y = data
    solver = custom_root(ridge_optimality, argnums=1, solve=linear_solve.solve_cg(rtol=1e-13))(
        lambda w, lam, X, y: ridge_closed_form(lam, X, y)
    )
    w0 = torch.zeros(P, dtype=D)
    lam = torch.tensor(0.7, dtype=D, requires_grad=True)
    (g_eager,) = torch.autograd.grad((solver(w0, lam, X, y) ** 3).sum(), lam)
    (g,) = torch.autograd.grad((solver(w0, lam, X, y) ** 3).sum(), lam, create_graph=True)
    (h,) = torch.autograd.grad(g, lam)

    def ref(t: torch.Tensor) -> torch.Tensor:
        return (ridge_closed_form(t, X, y) ** 3).sum()

    lam0 = lam.detach()
    torch.testing.assert_close(g_eager, torch.func.grad(ref)(lam0), rtol=1e-10, atol=0)
    torch.testing.assert_close(g.detach(), g_eager, rtol=1e-12, atol=0)
    torch.testing.assert_close(h, torch.func.grad(torch.func.grad(ref))(lam0), rtol=1e-8, atol=0)

    unused = custom_root(lambda x, a, b: x - a, argnums=(1, 2))(lambda x, a, b: a.clone())
    a = torch.tensor([1.0, -2.0], dtype=D, requires_grad=True)
    b = torch.tensor([3.0], dtype=D, requires_grad=True)
    ga, gb = torch.autograd.grad((unused(torch.zeros(2, dtype=D), a, b) ** 2).sum(), (a, b))
    torch.testing.assert_close(ga, 2 * a.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(gb, torch.zeros(1, dtype=D), rtol=0, atol=0)


# ----------------------------------------------------------------------------- errors


def test_argnums_errors() -> None:
    with pytest.raises(
        ValueError, match=r"custom_root: argnums counts .* pass indices >= 1; got 0"
    ):
        custom_root(ridge_optimality, argnums=0)
    with pytest.raises(ValueError, match="pass indices >= 1; got \\(1, 0\\)"):
        custom_root(ridge_optimality, argnums=(1, 0))
    with pytest.raises(TypeError, match="custom_root: argnums must be an int or a tuple of ints"):
        custom_root(ridge_optimality, argnums="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must name at least one argument"):
        custom_root(ridge_optimality, argnums=())
    with pytest.raises(TypeError, match="custom_root: optimality_fn must be callable"):
        custom_root(None, argnums=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="custom_fixed_point: argnums counts"):
        custom_fixed_point(lambda x, t: x, argnums=0)
    solver = custom_root(ridge_optimality, argnums=4)(lambda w, lam, X, y: w)
    with pytest.raises(
        ValueError, match=r"argnums \(4,\) is out of range for a call of <lambda> with 4"
    ):
        solver(torch.zeros(P), torch.tensor(1.0), torch.ones(N, P), torch.ones(N))


def test_non_tensor_leaves_are_rejected(data) -> None:
    X, y = data
    solver = custom_root(lambda w, hp: w - hp["a"], argnums=1)(lambda w, hp: hp["a"])
    with pytest.raises(
        TypeError, match=r"argument 1 is in argnums, so it must be a tensor .* float"
    ):
        solver(torch.zeros(()), {"a": torch.ones(()), "b": 3.0})
    bad_out = custom_root(ridge_optimality, argnums=1)(lambda w, lam, X, y: [1.0])
    with pytest.raises(TypeError, match="the solver must return a tensor or a non-empty tree"):
        bad_out(torch.zeros(P, dtype=D), torch.tensor(1.0, dtype=D), X, y)
    no_aux = custom_root(ridge_optimality, argnums=1, has_aux=True)(lambda w, lam, X, y: w)
    with pytest.raises(TypeError, match=r"with has_aux=True the solver must return a pair"):
        no_aux(torch.zeros(P, dtype=D), torch.tensor(1.0, dtype=D), X, y)


def test_optimality_structure_mismatch_is_reported(data) -> None:
    X, y = data
    lam = torch.tensor(1.0, dtype=D, requires_grad=True)
    solver = custom_root(lambda w, lam, X, y: [ridge_optimality(w, lam, X, y)], argnums=1)(
        lambda w, lam, X, y: ridge_closed_form(lam, X, y)
    )
    out = solver(torch.zeros(P, dtype=D), lam, X, y)
    with pytest.raises(
        ValueError, match="optimality_fn must return a tree of tensors with the structure"
    ):
        out.sum().backward()
    assert lam.grad is None
    shapes = custom_root(lambda w, lam, X, y: ridge_optimality(w, lam, X, y)[:2], argnums=1)(
        lambda w, lam, X, y: ridge_closed_form(lam, X, y)
    )
    with pytest.raises(
        ValueError, match=r"residual of shape \(2,\) for a solution leaf of shape \(4,\)"
    ):
        shapes(torch.zeros(P, dtype=D), lam, X, y).sum().backward()


def test_nonconverging_linear_solve_raises_not_a_wrong_gradient(data) -> None:
    X, y = data
    lam = torch.tensor(1e-3, dtype=D, requires_grad=True)
    solver = custom_root(
        ridge_optimality, argnums=1, solve=linear_solve.solve_cg(maxiter=1, strict=True)
    )(lambda w, lam, X, y: ridge_closed_form(lam, X, y))
    with pytest.raises(linalg.ConvergenceError, match="cg: did not converge in maxiter=1"):
        solver(torch.zeros(P, dtype=D), lam, X, y).sum().backward()
    assert lam.grad is None
    # Under torch.func transforms there is no exception on values: the gradient is NaN.
    g = torch.func.grad(lambda t: solver(torch.zeros(P, dtype=D), t, X, y).sum())(lam.detach())
    assert torch.isnan(g)


def test_linear_solver_that_changes_the_tree_is_reported(data) -> None:
    X, y = data

    def listing_solve(matvec, b):  # the solution is a tuple; this solver passes a list
        return matvec(list(b))

    solver = custom_root(
        lambda w, lam, X, y: (ridge_optimality(w[0], lam, X, y),), argnums=1, solve=listing_solve
    )(lambda w, lam, X, y: (ridge_closed_form(lam, X, y),))
    lam = torch.tensor(1.0, dtype=D, requires_grad=True)
    (out,) = solver((torch.zeros(P, dtype=D),), lam, X, y)
    with pytest.raises(ValueError, match="the linear solver must apply matvec to trees with"):
        out.sum().backward()
    assert lam.grad is None
