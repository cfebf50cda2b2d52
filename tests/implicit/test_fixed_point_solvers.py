"""Fixed-point solvers (plain, Anderson, Broyden) and fixed_point_layer's backward rules.

References are closed forms in float64: the linear map T(x) = A x + B theta has
x* = (I - A)^{-1} B theta and d x*/d theta = (I - A)^{-1} B; a tanh layer is checked against a
long plain iteration and the implicit function theorem written out with dense Jacobians.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from torchopt_lite import linear_solve
from torchopt_lite.diff.implicit import (
    FixedPointInfo,
    anderson,
    broyden,
    fixed_point_iteration,
    fixed_point_layer,
)

D = torch.float64
N, P = 16, 4
TOL = dict(atol=1e-10, rtol=0.0)


@pytest.fixture
def linear(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A symmetric A with spectrum in [-0.9, 0.95] (a slow contraction), B and theta."""
    Q, _ = torch.linalg.qr(torch.randn(N, N, dtype=D))
    A = Q @ torch.diag(torch.linspace(-0.9, 0.95, N, dtype=D)) @ Q.T
    return A, torch.randn(N, P, dtype=D), torch.randn(P, dtype=D)


def T_linear(x, theta, A, B):
    return A @ x + B @ theta


def closed_form(theta, A, B):
    return torch.linalg.solve(torch.eye(N, dtype=D) - A, B @ theta)


@pytest.fixture
def tanh_layer(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W with spectrum in [-0.5, 0.97], U and an input scaled so that tanh stays near linear."""
    torch.manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(N, N, dtype=D))
    W = Q @ torch.diag(torch.linspace(-0.5, 0.97, N, dtype=D)) @ Q.T
    return W, 0.02 * torch.randn(N, P, dtype=D), torch.randn(P, dtype=D)


def T_tanh(z, theta, W, U):
    return torch.tanh(W @ z + U @ theta)


def plain_reference(T, x0, steps: int = 5000):
    x = x0
    for _ in range(steps):
        x = T(x)
    return x


SOLVERS = {
    "plain": lambda: fixed_point_iteration(maxiter=2000, **TOL),
    "anderson": lambda: anderson(m=5, maxiter=400, **TOL),
    "broyden": lambda: broyden(maxiter=200, **TOL),
}


# ----------------------------------------------------------------------------- forward solvers


@pytest.mark.parametrize("name", list(SOLVERS))
def test_linear_solvers_reach_closed_form(name: str, linear) -> None:
    A, B, theta = linear
    x, info = SOLVERS[name]()(lambda x: T_linear(x, theta, A, B), torch.zeros(N, dtype=D))
    assert isinstance(info, FixedPointInfo)
    assert bool(info.converged)
    assert float(info.residual) <= 1e-10
    residual = torch.linalg.vector_norm(T_linear(x, theta, A, B) - x)
    torch.testing.assert_close(info.residual, residual, rtol=1e-12, atol=0.0)
    # ||x - x*|| <= ||(I - A)^{-1}|| ||T(x) - x|| = 20 * residual
    torch.testing.assert_close(x, closed_form(theta, A, B), rtol=0, atol=2e-9)
    assert info.trace.shape[0] >= int(info.iterations)
    assert float(info.trace[int(info.iterations) - 1]) <= 1e-10


def test_accelerated_solvers_need_fewer_iterations(linear, tanh_layer) -> None:
    A, B, theta = linear
    W, U, x_in = tanh_layer
    cases = {
        "linear": lambda x: T_linear(x, theta, A, B),
        "tanh": lambda z: T_tanh(z, x_in, W, U),
    }
    for case, T in cases.items():
        counts = {}
        for name, make in SOLVERS.items():
            _, info = make()(T, torch.zeros(N, dtype=D))
            assert bool(info.converged), name
            counts[name] = int(info.iterations)
        # plain: rate 0.95 (linear) -> ~450 steps, about 0.8 (tanh) -> ~100 steps
        assert counts["anderson"] < counts["plain"] // 2, (case, counts)
        assert counts["broyden"] < counts["plain"] // (4 if case == "linear" else 2), (case, counts)


def test_tanh_layer_matches_long_plain_iteration(tanh_layer) -> None:
    W, U, x_in = tanh_layer

    def T(z):
        return T_tanh(z, x_in, W, U)

    ref = plain_reference(T, torch.zeros(N, dtype=D))
    for name in ("anderson", "broyden"):
        z, info = SOLVERS[name]()(T, torch.zeros(N, dtype=D))
        assert bool(info.converged)
        torch.testing.assert_close(z, ref, rtol=0, atol=1e-8, msg=name)


def test_linear_broyden_is_exact_in_2n_steps(linear) -> None:
    A, B, theta = linear
    _, info = broyden(maxiter=3 * N, **TOL)(
        lambda x: T_linear(x, theta, A, B), torch.zeros(N, dtype=D)
    )
    assert int(info.iterations) <= 2 * N  # Gay (1979): good Broyden is exact in 2n steps


def test_anderson_m1_is_damped_iteration(linear) -> None:
    A, B, theta = linear

    def T(x):
        return T_linear(x, theta, A, B)

    x0 = torch.zeros(N, dtype=D)
    opts = dict(maxiter=7, check_every=None, atol=0.0, rtol=0.0)
    xa, ia = anderson(m=1, beta=0.6, **opts)(T, x0)
    xp, ip = fixed_point_iteration(damping=0.6, **opts)(T, x0)
    torch.testing.assert_close(xa, xp, rtol=0, atol=1e-14)
    torch.testing.assert_close(ia.trace, ip.trace, rtol=1e-12, atol=0)
    x = x0
    for _ in range(7):
        x = 0.4 * x + 0.6 * T(x)
    torch.testing.assert_close(xp, x, rtol=0, atol=1e-14)
    assert int(ip.iterations) == 7 and not bool(ip.converged)


@pytest.mark.parametrize("name", ["anderson", "broyden"])
def test_host_check_does_not_change_the_result(name: str, linear) -> None:
    A, B, theta = linear

    def T(x):
        return T_linear(x, theta, A, B)

    make = {"anderson": anderson, "broyden": broyden}[name]
    x1, i1 = make(maxiter=150, check_every=1, **TOL)(T, torch.zeros(N, dtype=D))
    x2, i2 = make(maxiter=150, check_every=None, **TOL)(T, torch.zeros(N, dtype=D))
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)
    assert int(i1.iterations) == int(i2.iterations) == i1.trace.shape[0]
    assert i2.trace.shape == (150,)
    torch.testing.assert_close(
        i2.trace[int(i2.iterations) :], i2.residual.expand(150 - int(i2.iterations))
    )


def test_trees_of_mixed_leaves(linear) -> None:
    A, B, theta = linear

    def T(x):  # the linear map on {"a": first 6 entries, "b": the other 10 as a 2 x 5 matrix}
        flat = torch.cat([x["a"], x["b"].reshape(-1)])
        out = T_linear(flat, theta, A, B)
        return {"a": out[:6], "b": out[6:].reshape(2, 5)}

    x0 = {"a": torch.zeros(6, dtype=D), "b": torch.zeros(2, 5, dtype=D)}
    for make in (anderson, broyden):
        x, info = make(maxiter=200, **TOL)(T, x0)
        ref = closed_form(theta, A, B)
        torch.testing.assert_close(x["a"], ref[:6], rtol=0, atol=2e-9)
        torch.testing.assert_close(x["b"], ref[6:].reshape(2, 5), rtol=0, atol=2e-9)
        assert bool(info.converged)


def test_non_convergence_is_reported_with_the_best_iterate(linear) -> None:
    A, B, theta = linear

    def T(x):
        return T_linear(x, theta, A, B)

    x, info = broyden(maxiter=5, **TOL)(T, torch.zeros(N, dtype=D))
    assert not bool(info.converged)
    assert int(info.iterations) == 5
    torch.testing.assert_close(info.residual, info.trace.min(), rtol=0, atol=0)
    torch.testing.assert_close(
        info.residual, torch.linalg.vector_norm(T(x) - x), rtol=1e-12, atol=0
    )


def test_converged_start_takes_no_step(linear) -> None:
    A, B, theta = linear
    x_star = closed_form(theta, A, B)
    x, info = anderson(atol=1e-8, rtol=0.0)(lambda x: T_linear(x, theta, A, B), x_star)
    assert int(info.iterations) == 0 and bool(info.converged)
    torch.testing.assert_close(x, x_star, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_vmap_over_problems_equals_loop(name: str, linear) -> None:
    A, B, _ = linear
    thetas = torch.randn(3, P, dtype=D)
    solver = SOLVERS[name]()

    def solve(theta):
        return solver(lambda x: T_linear(x, theta, A, B), torch.zeros(N, dtype=D))

    xs, infos = torch.func.vmap(solve)(thetas)
    for i in range(3):
        x, info = solve(thetas[i])
        # batched kernels round differently; |(I - A)^{-1}| = 20 amplifies it in x and in the
        # residual, which is a difference of nearly equal vectors
        torch.testing.assert_close(xs[i], x, rtol=0, atol=1e-11)
        assert int(infos.iterations[i]) == int(info.iterations)
        torch.testing.assert_close(infos.residual[i], info.residual, rtol=0, atol=1e-11)
        assert bool(infos.converged[i])


# ----------------------------------------------------------------------------- backward rules


def jac_layer(layer, theta, A, B):
    return torch.func.jacrev(lambda t: layer(torch.zeros(N, dtype=D), t, A, B)[0])(theta)


def phantom_formula(J, Bt, k: int, lam: float):
    """lam * sum_{i<k} ((1 - lam) I + lam J)^i B."""
    M = (1 - lam) * torch.eye(N, dtype=D) + lam * J
    total, term = torch.zeros_like(Bt), Bt
    for _ in range(k):
        total = total + term
        term = M @ term
    return lam * total


@pytest.mark.parametrize(
    "solve",
    [
        linear_solve.solve_normal_cg(rtol=1e-14),
        linear_solve.solve_bicgstab(rtol=1e-14),
        linear_solve.solve_inv(),
    ],
    ids=["normal_cg", "bicgstab", "inv"],
)
def test_implicit_backward_equals_closed_form(solve, linear) -> None:
    A, B, theta = linear
    layer = fixed_point_layer(T_linear, anderson(maxiter=400, **TOL), solve=solve)
    ref = torch.linalg.solve(torch.eye(N, dtype=D) - A, B)
    torch.testing.assert_close(jac_layer(layer, theta, A, B), ref, rtol=0, atol=1e-8)
    # and through plain autograd, with respect to A too (argnums=(1, 2))
    layer2 = fixed_point_layer(T_linear, broyden(**TOL), argnums=(1, 2), solve=solve)
    theta_, A_ = theta.clone().requires_grad_(), A.clone().requires_grad_()
    x, _ = layer2(torch.zeros(N, dtype=D), theta_, A_, B)
    g = torch.autograd.grad(x.square().sum(), (theta_, A_))
    g_ref = torch.func.grad(lambda t, a: closed_form(t, a, B).square().sum(), (0, 1))(theta, A)
    torch.testing.assert_close(g[0], g_ref[0], rtol=0, atol=1e-8)
    # entries of d/dA reach 1e3 (|x*| |u| with |(I - A)^{-1}| = 20): compare relatively
    torch.testing.assert_close(g[1], g_ref[1], rtol=1e-9, atol=0)


def test_implicit_backward_on_tanh_layer(tanh_layer) -> None:
    W, U, x_in = tanh_layer
    layer = fixed_point_layer(T_tanh, anderson(maxiter=400, **TOL), solve=linear_solve.solve_inv())
    z, _ = layer(torch.zeros(N, dtype=D), x_in, W, U)
    s = 1 - torch.tanh(W @ z + U @ x_in) ** 2  # T = tanh(W z + U x): J = diag(s) W, B = diag(s) U
    ref = torch.linalg.solve(torch.eye(N, dtype=D) - s[:, None] * W, s[:, None] * U)
    jac = torch.func.jacrev(lambda t: layer(torch.zeros(N, dtype=D), t, W, U)[0])(x_in)
    torch.testing.assert_close(jac, ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize(("k", "lam"), [(1, 0.5), (3, 0.5), (8, 0.3), (5, 1.0)])
def test_phantom_equals_its_formula(k: int, lam: float, linear) -> None:
    A, B, theta = linear
    layer = fixed_point_layer(
        T_linear, anderson(maxiter=400, **TOL), backward="phantom", k=k, damping=lam
    )
    torch.testing.assert_close(
        jac_layer(layer, theta, A, B), phantom_formula(A, B, k, lam), rtol=0, atol=1e-12
    )


def test_phantom_equals_vjp_of_unrolled_damped_steps(tanh_layer) -> None:
    W, U, x_in = tanh_layer
    k, lam = 6, 0.7
    layer = fixed_point_layer(T_tanh, broyden(**TOL), backward="phantom", k=k, damping=lam)
    z_star, _ = layer(torch.zeros(N, dtype=D), x_in, W, U)

    def unrolled(t):  # k damped steps started at the (detached) fixed point
        z = z_star.detach()
        for _ in range(k):
            z = (1 - lam) * z + lam * T_tanh(z, t, W, U)
        return z

    jac = torch.func.jacrev(lambda t: layer(torch.zeros(N, dtype=D), t, W, U)[0])(x_in)
    torch.testing.assert_close(jac, torch.func.jacrev(unrolled)(x_in), rtol=0, atol=1e-9)


def test_phantom_approaches_implicit_monotonically(linear) -> None:
    A, B, theta = linear
    forward = anderson(maxiter=400, **TOL)
    exact = torch.linalg.solve(torch.eye(N, dtype=D) - A, B)
    errors = []
    for k in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        layer = fixed_point_layer(T_linear, forward, backward="phantom", k=k, damping=0.8)
        errors.append(float(torch.linalg.matrix_norm(jac_layer(layer, theta, A, B) - exact)))
    assert all(b < a for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 1e-3 * errors[0], errors


def test_jfb_equals_dT_dtheta_at_fixed_point(linear, tanh_layer) -> None:
    A, B, theta = linear
    layer = fixed_point_layer(T_linear, anderson(maxiter=400, **TOL), backward="jfb")
    torch.testing.assert_close(jac_layer(layer, theta, A, B), B, rtol=0, atol=1e-14)
    W, U, x_in = tanh_layer
    layer = fixed_point_layer(T_tanh, anderson(maxiter=400, **TOL), backward="jfb")
    z, _ = layer(torch.zeros(N, dtype=D), x_in, W, U)
    jac = torch.func.jacrev(lambda t: layer(torch.zeros(N, dtype=D), t, W, U)[0])(x_in)
    ref = torch.func.jacrev(lambda t: T_tanh(z.detach(), t, W, U))(x_in)
    torch.testing.assert_close(jac, ref, rtol=0, atol=1e-14)
    # jfb is phantom with k = 1, damping = 1
    phantom = fixed_point_layer(
        T_tanh, anderson(maxiter=400, **TOL), backward="phantom", k=1, damping=1.0
    )
    jac1 = torch.func.jacrev(lambda t: phantom(torch.zeros(N, dtype=D), t, W, U)[0])(x_in)
    torch.testing.assert_close(jac1, jac, rtol=0, atol=1e-14)


def test_forward_mode_follows_the_backward_rule(linear) -> None:
    A, B, theta = linear
    v = torch.randn(P, dtype=D)
    exact = torch.linalg.solve(torch.eye(N, dtype=D) - A, B)
    refs = {
        "implicit": (dict(solve=linear_solve.solve_inv()), exact),
        "phantom": (dict(k=4, damping=0.6), phantom_formula(A, B, 4, 0.6)),
        "jfb": ({}, B),
    }
    for backward, (options, jac) in refs.items():
        layer = fixed_point_layer(T_linear, broyden(**TOL), backward=backward, **options)
        _, t = torch.func.jvp(
            lambda th, layer=layer: layer(torch.zeros(N, dtype=D), th, A, B)[0], (theta,), (v,)
        )
        torch.testing.assert_close(t, jac @ v, rtol=0, atol=1e-10, msg=backward)


def test_mixed_dtype_leaves_keep_their_dtypes(linear) -> None:
    A, B, theta = linear

    def T(x):
        flat = torch.cat([x["a"].double(), x["b"]])
        out = T_linear(flat, theta, A, B)
        return {"a": out[:6].float(), "b": out[6:]}

    x0 = {"a": torch.zeros(6, dtype=torch.float32), "b": torch.zeros(N - 6, dtype=D)}
    x, info = anderson(maxiter=200, atol=1e-5, rtol=0.0)(T, x0)
    assert x["a"].dtype == torch.float32 and x["b"].dtype == D and bool(info.converged)
    ref = closed_form(theta, A, B)
    torch.testing.assert_close(x["b"], ref[6:], rtol=0, atol=1e-4)  # float32 leaf: ~1e-7 each


@pytest.mark.parametrize("backward", ["implicit", "phantom", "jfb"])
def test_layer_vmap_equals_loop(backward: str, linear) -> None:
    A, B, _ = linear
    thetas = torch.randn(3, P, dtype=D)
    extra = (
        {"solve": linear_solve.solve_bicgstab(rtol=1e-13, maxiter=200)}
        if (backward == "implicit")
        else {}
    )
    layer = fixed_point_layer(T_linear, broyden(**TOL), backward=backward, **extra)

    def loss(theta):
        x, info = layer(torch.zeros(N, dtype=D), theta, A, B)
        return x.square().sum(), info.iterations

    grads, iters = torch.func.vmap(torch.func.grad(loss, has_aux=True))(thetas)
    for i in range(3):
        theta = thetas[i].clone().requires_grad_()
        value, it = loss(theta)
        (g,) = torch.autograd.grad(value, theta)
        torch.testing.assert_close(grads[i], g, rtol=0, atol=1e-10)
        assert int(iters[i]) == int(it)


def test_layer_forward_value_is_the_fixed_point(linear) -> None:
    A, B, theta = linear
    for backward in ("implicit", "phantom", "jfb"):
        layer = fixed_point_layer(T_linear, broyden(**TOL), backward=backward)
        x, info = layer(torch.zeros(N, dtype=D), theta, A, B)
        torch.testing.assert_close(x, closed_form(theta, A, B), rtol=0, atol=2e-9)
        assert bool(info.converged)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fixed_point_iteration(maxiter=-1), "maxiter must be a non-negative int"),
        (lambda: fixed_point_iteration(maxiter=True), "maxiter must be a non-negative int"),
        (lambda: fixed_point_iteration(rtol=-1.0), "rtol must be >= 0"),
        (lambda: fixed_point_iteration(atol=float("nan")), "atol must be >= 0"),
        (lambda: fixed_point_iteration(check_every=0), "check_every must be a positive int"),
        (lambda: fixed_point_iteration(damping=0.0), r"damping must be in \(0, 1\]"),
        (lambda: anderson(m=0), "anderson: m must be a positive int"),
        (lambda: anderson(beta=1.5), r"anderson: beta must be in \(0, 1\]"),
        (lambda: anderson(ridge=-1e-3), "anderson: ridge must be >= 0"),
        (lambda: broyden(memory=0), "broyden: memory must be a positive int or None"),
    ],
)
def test_solver_option_errors(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_solver_call_errors() -> None:
    solver = anderson()
    with pytest.raises(TypeError, match="anderson: fn must be callable; got int"):
        solver(3, torch.zeros(2))
    with pytest.raises(TypeError, match="every leaf of x0 must be a floating-point tensor"):
        solver(lambda x: x, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="every leaf of x0 must be a floating-point tensor"):
        solver(lambda x: x, [torch.zeros(2), 1.0])
    with pytest.raises(TypeError, match="x0 must be a tensor or a non-empty tree"):
        solver(lambda x: x, [])
    with pytest.raises(ValueError, match="fn\\(x\\) must return a tree of tensors with the str"):
        solver(lambda x: x[:1], torch.zeros(2))
    with pytest.raises(ValueError, match="fn\\(x\\) must return a tree of tensors with the str"):
        broyden()(lambda x: {"a": x["a"]}, {"a": torch.zeros(2), "b": torch.zeros(1)})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(T=3), TypeError, "fixed_point_layer: T must be callable; got int"),
        (dict(solver="anderson"), TypeError, r"solver must be a callable solver\(fn, x0\)"),
        (dict(backward="neumann"), ValueError, "backward must be one of"),
        (dict(backward="jfb", k=3), ValueError, "k and damping apply to backward='phantom'"),
        (dict(damping=0.5), ValueError, "k and damping apply to backward='phantom'"),
        (
            dict(backward="jfb", solve=linear_solve.solve_inv()),
            ValueError,
            "solve applies to backward='implicit' only",
        ),
        (dict(backward="phantom", k=0), ValueError, "k must be a positive int; got 0"),
        (dict(backward="phantom", damping=1.5), ValueError, r"damping must be in \(0, 1\]"),
        (dict(argnums=0), ValueError, "fixed_point_layer: argnums counts"),
        (dict(argnums="1"), TypeError, "fixed_point_layer: argnums must be an int"),
    ],
)
def test_layer_errors(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"T": T_linear, **kwargs}
    with pytest.raises(error, match=match):
        fixed_point_layer(**kwargs)


def test_layer_argnums_out_of_range(linear) -> None:
    A, B, theta = linear
    layer = fixed_point_layer(T_linear, argnums=5)
    with pytest.raises(ValueError, match="argnums \\(5,\\) is out of range"):
        layer(torch.zeros(N, dtype=D), theta, A, B)
