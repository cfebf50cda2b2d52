"""interop.minimize: every scipy method against scipy's own run with closed-form derivatives."""

from __future__ import annotations

import numpy as np
import optree
import pytest
import scipy.optimize as so
import torch
from torch.autograd.function import once_differentiable

from tests.interop._interop_problems import (
    GRADIENT,
    GRADIENT_FREE,
    Logistic,
    reference_kwargs,
    rosen_t,
)
from torchopt_lite.interop import minimize
from torchopt_lite.interop._flat import FlatParams
from torchopt_lite.interop._objective import Objective

X0 = np.array([1.3, 0.7, 0.8, 1.9, 1.2])
# CG and TNC line searches branch on the last bits of the gradient (autograd and the closed form
# round differently), so their iterates drift apart by up to the solver tolerance; every other
# method reproduces scipy's iterates to rounding.
ATOL = {"CG": 1e-5, "TNC": 1e-5}


def _rosen_x0(method: str) -> np.ndarray:
    # dogleg needs a positive definite Hessian at the start; Rosenbrock's at X0 is not.
    return np.full(5, 1.1) if method == "dogleg" else X0


@pytest.mark.parametrize("method", GRADIENT + GRADIENT_FREE)
def test_rosenbrock_matches_scipy(method: str) -> None:
    x0 = _rosen_x0(method)
    kwargs = reference_kwargs(method, so.rosen_der, so.rosen_hess_prod, so.rosen_hess)
    ref = so.minimize(so.rosen, x0, method=method, **kwargs)
    params = torch.tensor(x0)
    sol, res = minimize(rosen_t, params, method=method)
    assert res.success == ref.success
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=ATOL.get(method, 1e-12))
    np.testing.assert_allclose(res.fun, ref.fun, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(sol, torch.tensor(res.x), rtol=0, atol=0)
    torch.testing.assert_close(params, torch.tensor(x0), rtol=0, atol=0)  # not modified
    if method in GRADIENT:
        # the optimum itself, to each method's default tolerance
        np.testing.assert_allclose(res.x, np.ones(5), atol=5e-4)


@pytest.mark.parametrize("method", (*GRADIENT, "Nelder-Mead", "Powell", "COBYQA"))
def test_logistic_regression_matches_scipy(method: str) -> None:
    prob = Logistic()
    kwargs = reference_kwargs(method, prob.jac, prob.hessp, prob.hess)
    ref = so.minimize(prob.fun, np.zeros(4), method=method, **kwargs)
    sol, res = minimize(prob.torch_fun, prob.params(), method=method)
    assert res.success and ref.success
    # CG, TNC, Powell and COBYQA branch on last-bit differences; the drift stays below 1e-9
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    assert set(sol) == {"w", "b"} and sol["w"].shape == (3,) and sol["b"].shape == ()
    np.testing.assert_array_equal(sol["b"].numpy(), res.x[0])
    np.testing.assert_array_equal(sol["w"].numpy(), res.x[1:])
    if method in GRADIENT:
        exact = so.minimize(prob.fun, np.zeros(4), jac=prob.jac, method="BFGS", tol=1e-12).x
        # default tolerances: SLSQP's ftol=1e-6 on f stops ~1e-3 from the optimum in x
        np.testing.assert_allclose(res.x, exact, rtol=0, atol=2e-3)


def test_default_method_is_scipys() -> None:
    prob = Logistic()
    _, res = minimize(prob.torch_fun, prob.params())
    ref = so.minimize(prob.fun, np.zeros(4), jac=prob.jac)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-12)
    _, res_b = minimize(prob.torch_fun, prob.params(), bounds=[(0.1, 1.0)] * 4)
    ref_b = so.minimize(prob.fun, np.zeros(4), jac=prob.jac, bounds=[(0.1, 1.0)] * 4)
    np.testing.assert_allclose(res_b.x, ref_b.x, rtol=0, atol=1e-12)
    assert res_b.x.min() == pytest.approx(0.1)  # a bound is active


@pytest.mark.parametrize("method", ["L-BFGS-B", "TNC", "SLSQP", "trust-constr", "Powell"])
def test_bounds_pass_through(method: str) -> None:
    bounds = so.Bounds(np.full(5, -2.0), np.r_[0.9, 0.8, 2.0, 2.0, 2.0])
    kwargs = reference_kwargs(method, so.rosen_der, so.rosen_hess_prod, so.rosen_hess)
    ref = so.minimize(so.rosen, X0.clip(-2, 0.8), method=method, bounds=bounds, **kwargs)
    _, res = minimize(rosen_t, torch.tensor(X0.clip(-2, 0.8)), method=method, bounds=bounds)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=ATOL.get(method, 1e-9))
    assert np.all(res.x <= bounds.ub + 1e-12)


def test_float32_leaves_keep_dtype() -> None:
    prob = Logistic()
    sol, res = minimize(prob.torch_fun, prob.params(torch.float32), method="L-BFGS-B")
    ref, _ = minimize(prob.torch_fun, prob.params(), method="L-BFGS-B")
    assert sol["w"].dtype == torch.float32 and res.x.dtype == np.float64
    # a float32 objective has float32 gradients: rounding noise ends L-BFGS-B's line search
    # early, so the optimum agrees to ~1e-3 only
    torch.testing.assert_close(sol["w"].double(), ref["w"], rtol=0, atol=1e-3)


def test_callback_receives_tree() -> None:
    seen: list = []
    prob = Logistic()
    _, res = minimize(prob.torch_fun, prob.params(), method="BFGS", callback=seen.append)
    assert len(seen) == res.nit
    assert set(seen[-1]) == {"w", "b"}
    np.testing.assert_allclose(seen[-1]["w"].numpy(), res.x[1:], rtol=0, atol=0)

    states: list = []
    minimize(
        prob.torch_fun,
        prob.params(),
        method="trust-constr",
        callback=lambda p, state: states.append((p, state.nit)),
    )
    assert states[-1][1] == len(states) and set(states[-1][0]) == {"w", "b"}


def test_args_pass_to_fun() -> None:
    prob = Logistic()

    def fun(p, scale, shift):
        return scale * prob.torch_fun(p) + shift

    _, res = minimize(fun, prob.params(), args=(2.0, torch.tensor(3.0)), method="BFGS")
    ref = so.minimize(
        lambda x: 2 * prob.fun(x) + 3, np.zeros(4), jac=lambda x: 2 * prob.jac(x), method="BFGS"
    )
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-10)
    _, res1 = minimize(lambda p, s: s * prob.torch_fun(p), prob.params(), args=2.0)
    np.testing.assert_allclose(res1.x, ref.x, rtol=0, atol=1e-10)  # non-tuple args wrapped


def test_runs_under_no_grad() -> None:
    prob = Logistic()
    with torch.no_grad():
        _, res = minimize(prob.torch_fun, prob.params(), method="Newton-CG")
    ref = so.minimize(prob.fun, np.zeros(4), jac=prob.jac, hessp=prob.hessp, method="Newton-CG")
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-10)


# ---- derivatives against finite differences and closed forms -------------------------------


def _objective(fun, params, method="trust-ncg", backend="autograd") -> Objective:
    return Objective(fun, FlatParams(params, "test"), (), method=method, hessian_backend=backend)


@pytest.mark.parametrize("backend", ["autograd", "func"])
@pytest.mark.parametrize("problem", ["rosen", "logistic"])
def test_hessp_and_hess_match_finite_differences(problem: str, backend: str) -> None:
    rng = np.random.default_rng(1)
    if problem == "rosen":
        obj, n = _objective(rosen_t, torch.tensor(X0), backend=backend), 5
        exact_hess = so.rosen_hess
    else:
        prob = Logistic()
        obj, n = _objective(prob.torch_fun, prob.params(), backend=backend), 4
        exact_hess = prob.hess
    x, p = rng.normal(size=n), rng.normal(size=n)
    h = 1e-5
    fd_hvp = (obj.grad(x + h * p) - obj.grad(x - h * p)) / (2 * h)
    fd_hess = np.stack(
        [(obj.grad(x + h * e) - obj.grad(x - h * e)) / (2 * h) for e in np.eye(n)], axis=1
    )
    # central differences in float64: truncation O(h^2 f''') and rounding O(eps/h) ~ 1e-9
    np.testing.assert_allclose(obj.hessp(x, p), fd_hvp, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(obj.hess(x), fd_hess, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(obj.hessp(x, p), exact_hess(x) @ p, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(obj.hess(x), exact_hess(x), rtol=1e-12, atol=1e-10)
    # a second point: the gradient graph kept by 'autograd' belongs to the first one
    x2 = x + 0.5
    np.testing.assert_allclose(obj.hessp(x2, p), exact_hess(x2) @ p, rtol=1e-12, atol=1e-10)


def test_autograd_hessp_reuses_the_gradient_graph_of_a_point() -> None:
    calls: list = []

    def counted(p):
        calls.append(1)
        return rosen_t(p)

    rng = np.random.default_rng(0)
    for backend, calls_per_product in (("autograd", 0), ("func", 1)):
        obj = _objective(counted, torch.tensor(X0), backend=backend)
        calls.clear()
        products = [obj.hessp(X0, rng.normal(size=5)) for _ in range(5)]
        # autograd: one forward per point, then one backward per product
        assert len(calls) == max(1, 5 * calls_per_product)
        obj.hessp(X0 + 1.0, rng.normal(size=5))
        assert len(calls) == max(2, 6 * calls_per_product)
        assert all(q.shape == (5,) and np.isfinite(q).all() for q in products)


@pytest.mark.parametrize("backend", ["autograd", "func"])
def test_second_derivatives_of_a_linear_fun_are_zero(backend: str) -> None:
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    obj = _objective(lambda p: (c * p).sum(), torch.zeros(3, dtype=torch.float64), backend=backend)
    x = np.array([0.3, 0.1, -2.0])
    np.testing.assert_array_equal(obj.grad(x), c.numpy())
    np.testing.assert_array_equal(obj.hessp(x, np.ones(3)), np.zeros(3))
    np.testing.assert_array_equal(obj.hess(x), np.zeros((3, 3)))


@pytest.mark.parametrize("backend", ["autograd", "func"])
@pytest.mark.parametrize("method", ["Newton-CG", "trust-krylov", "trust-exact"])
def test_hessian_backends_reproduce_scipy(method: str, backend: str) -> None:
    prob = Logistic()
    kwargs = reference_kwargs(method, prob.jac, prob.hessp, prob.hess)
    ref = so.minimize(prob.fun, np.zeros(4), method=method, **kwargs)
    _, res = minimize(prob.torch_fun, prob.params(), method=method, hessian_backend=backend)
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-10)


def test_gradient_matches_closed_form() -> None:
    prob = Logistic()
    obj = _objective(prob.torch_fun, prob.params())
    x = np.random.default_rng(2).normal(size=4)
    f, g = obj.value_and_grad(x)
    assert f == pytest.approx(prob.fun(x), rel=1e-14)
    np.testing.assert_allclose(g, prob.jac(x), rtol=1e-12, atol=1e-14)
    assert obj.value(x) == f
    np.testing.assert_array_equal(obj.grad(x), g)  # cached point


# ---- constraints ---------------------------------------------------------------------------


def _circle_t(p):
    return 1.5 - (p**2).sum()


def test_dict_constraint_slsqp_and_cobyla() -> None:
    cons = {"type": "ineq", "fun": _circle_t}
    ref_cons = {"type": "ineq", "fun": lambda x: 1.5 - x @ x, "jac": lambda x: -2 * x}
    x0 = np.zeros(5)
    ref = so.minimize(so.rosen, x0, jac=so.rosen_der, method="SLSQP", constraints=ref_cons)
    _, res = minimize(rosen_t, torch.zeros(5, dtype=torch.float64), constraints=cons)
    assert res.success
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-10)
    assert res.x @ res.x == pytest.approx(1.5, abs=1e-6)  # active (to SLSQP's tolerance)

    ref_c = so.minimize(so.rosen, x0, method="COBYLA", constraints=ref_cons)
    _, res_c = minimize(rosen_t, torch.zeros(5, dtype=torch.float64), method="COBYLA",
                        constraints=[cons])  # fmt: skip
    # COBYLA stops at trust radius 1e-4; last-bit differences move its end point within that
    np.testing.assert_allclose(res_c.x, ref_c.x, rtol=0, atol=1e-3)


def test_nonlinear_and_linear_constraints_trust_constr() -> None:
    nlc = so.NonlinearConstraint(lambda p: torch.stack([(p**2).sum(), p[0]]), [-np.inf, 0.2],
                                 [1.5, np.inf])  # fmt: skip
    lc = so.LinearConstraint(np.ones((1, 5)), -np.inf, 2.0)
    ref_nlc = so.NonlinearConstraint(
        lambda x: np.array([x @ x, x[0]]),
        [-np.inf, 0.2],
        [1.5, np.inf],
        jac=lambda x: np.vstack([2 * x, np.eye(5)[0]]),
    )
    kwargs = {"jac": so.rosen_der, "hessp": so.rosen_hess_prod}
    ref = so.minimize(so.rosen, np.zeros(5), method="trust-constr", constraints=[ref_nlc, lc],
                      **kwargs)  # fmt: skip
    _, res = minimize(rosen_t, torch.zeros(5, dtype=torch.float64), method="trust-constr",
                      constraints=[nlc, lc])  # fmt: skip
    assert res.success
    # trust-constr's barrier iterations amplify last-bit differences of the constraint Jacobian
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-7)


def test_constraint_args() -> None:
    cons = {"type": "eq", "fun": lambda p, r: (p**2).sum() - r, "args": (torch.tensor(1.0),)}
    _, res = minimize(lambda p: (p - 2).pow(2).sum(), torch.ones(3, dtype=torch.float64),
                      constraints=cons, tol=1e-12)  # fmt: skip
    # closest point to (2, 2, 2) on the unit sphere
    np.testing.assert_allclose(res.x, np.full(3, 1 / np.sqrt(3)), atol=1e-7)


# ---- errors ----------------------------------------------------------------------------------


def _quad(p):
    return (p**2).sum()


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"minimize: unknown method 'Adam'; expected one of"):
        minimize(_quad, torch.ones(2), method="Adam")
    with pytest.raises(TypeError, match="minimize: method must be the name"):
        minimize(_quad, torch.ones(2), method=so.minimize)  # type: ignore[arg-type]


def test_bounds_and_constraints_refused_by_method() -> None:
    with pytest.raises(ValueError, match="method 'BFGS' does not accept bounds"):
        minimize(_quad, torch.ones(2), method="BFGS", bounds=[(0, 1)] * 2)
    with pytest.raises(ValueError, match="method 'L-BFGS-B' does not accept constraints"):
        minimize(_quad, torch.ones(2), method="L-BFGS-B",
                 constraints={"type": "eq", "fun": _quad})  # fmt: skip


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        (torch.ones(2, dtype=torch.float16), TypeError, "params must be float32 or float64.*16"),
        (torch.ones(2, dtype=torch.bfloat16), TypeError, "params must be float32 or.*bfloat16"),
        (torch.ones(2, dtype=torch.int64), TypeError, "params must be float32 or float64.*int64"),
        (torch.ones(2, dtype=torch.complex128), TypeError, "params must be float32 or float64"),
        ({"a": torch.ones(2), "b": 1.0}, TypeError, "every leaf of params must be a torch.Tensor"),
        ({}, ValueError, "params must hold at least one tensor"),
        (torch.ones(2, device="meta"), ValueError, "params are on the 'meta' device"),
        ([torch.ones(2), torch.ones(2, device="meta")], ValueError, "all params must be on one"),
    ],
)
def test_bad_params(params, error, match) -> None:
    before = optree.tree_map(_copy, params)
    with pytest.raises(error, match=f"minimize: {match}"):
        minimize(lambda p: sum(x.sum() for x in optree.tree_leaves(p)), params)
    optree.tree_map(_assert_same, params, before)  # nothing was modified


def _copy(x):
    return x.clone() if isinstance(x, torch.Tensor) and x.device.type != "meta" else x


def _assert_same(x, y):
    if isinstance(x, torch.Tensor) and x.device.type != "meta":
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
    else:
        assert x is y


def test_bad_objective() -> None:
    x = torch.ones(3)
    with pytest.raises(ValueError, match=r"scalar \(one-element\) tensor; got shape \(3,\)"):
        minimize(lambda p: p**2, x)
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        minimize(lambda p: p**2, x, method="Nelder-Mead")
    with pytest.raises(TypeError, match=r"fun must return a scalar torch\.Tensor; got float"):
        minimize(lambda p: float(p.detach().sum()), x)
    with pytest.raises(TypeError, match=r"real floating-point tensor; got torch\.int64"):
        minimize(lambda p: p.sum().long(), x)
    with pytest.raises(TypeError, match="fun must be callable; got int"):
        minimize(3, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"does not depend on params through autograd"):
        minimize(lambda p: (p**2).sum().detach(), x)
    with pytest.raises(ValueError, match=r"minimize: hessian_backend must be one of 'autograd', "
                                         r"'func'; got 'jax'"):  # fmt: skip
        minimize(_quad, x, method="Newton-CG", hessian_backend="jax")  # type: ignore[arg-type]
    torch.testing.assert_close(x, torch.ones(3), rtol=0, atol=0)


def test_fun_that_ignores_its_params() -> None:
    # a module's own parameters captured by fun are not the params minimize passes
    model = torch.nn.Linear(3, 1).double()
    data = torch.randn(8, 3, dtype=torch.float64)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    before = {k: v.clone() for k, v in params.items()}

    def ignores(p):
        return (model(data) ** 2).mean()

    match = r"minimize: fun's output does not depend on the parameters: .*functional_call"
    with pytest.raises(ValueError, match=match):
        minimize(ignores, params, method="BFGS")
    for key, value in params.items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())

    # with the params it receives, the same loss minimizes
    def uses(p):
        return (torch.func.functional_call(model, p, (data,)) ** 2).mean()

    sol, res = minimize(uses, params, method="BFGS")
    assert res.success and float(uses(sol)) < 1e-10


class _NumpySquareSum(torch.autograd.Function):
    """Sum of squares computed in numpy, with a hand-written backward and no forward mode."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tensor(float(np.sum(x.detach().numpy() ** 2)), dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class _OnceDifferentiable(_NumpySquareSum):
    """The same, with a backward marked @once_differentiable (computed in numpy)."""

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.from_numpy(2 * x.numpy()) * g


SECOND = [("Newton-CG", "Hessian-vector products"), ("trust-exact", "the Hessian")]


@pytest.mark.parametrize(("method", "what"), SECOND)
def test_second_derivatives_without_forward_mode(method: str, what: str) -> None:
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"method '{method}' needs {what} of fun, computed with "
                                         "torch.func, but fun could not be differentiated twice.*"
                                         "hessian_backend='autograd'.*'L-BFGS-B'"):  # fmt: skip
        minimize(_NumpySquareSum.apply, x, method=method, hessian_backend="func")
    # its backward (2 x g) is differentiable: double backward needs nothing more
    sol, res = minimize(_NumpySquareSum.apply, x, method=method)
    assert res.success
    torch.testing.assert_close(sol, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-8)
    # gradient-only methods work with either: reverse mode alone is enough
    sol, res = minimize(_OnceDifferentiable.apply, x, method="BFGS")
    assert res.success
    torch.testing.assert_close(sol, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-8)


@pytest.mark.parametrize(("method", "what"), SECOND)
def test_second_derivatives_of_once_differentiable_fun(method: str, what: str) -> None:
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"method '{method}' needs {what} of fun, computed with "
                                         "double backward, but fun could not be differentiated "
                                         "twice: its backward is not differentiable.*"
                                         "hessian_backend='func'.*'L-BFGS-B'"):  # fmt: skip
        minimize(_OnceDifferentiable.apply, x, method=method)


def test_bad_constraints() -> None:
    x = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"constraint 0 gives its own 'jac'"):
        minimize(_quad, x, constraints={"type": "eq", "fun": _quad, "jac": lambda p: p})
    nlc = so.NonlinearConstraint(_quad, 0, 1, jac=lambda x: 2 * x)
    with pytest.raises(ValueError, match=r"constraint 0 gives its own 'jac'"):
        minimize(_quad, x, method="trust-constr", constraints=nlc)
    with pytest.raises(ValueError, match=r"constraints\[0\]\['type'\] must be 'eq' or 'ineq'"):
        minimize(_quad, x, constraints={"type": "le", "fun": _quad})
    with pytest.raises(TypeError, match=r"constraints\[0\]\['fun'\] must be a callable"):
        minimize(_quad, x, constraints={"type": "eq", "fun": 1.0})
    with pytest.raises(TypeError, match=r"constraints\[1\] must be a dict"):
        minimize(_quad, x, constraints=[{"type": "eq", "fun": _quad}, "x>0"])
    with pytest.raises(TypeError, match=r"constraints must be a dict"):
        minimize(_quad, x, method="SLSQP", constraints="x>0")
    with pytest.raises(TypeError, match=r"constraints\[0\]\['fun'\] must return a real"):
        minimize(_quad, x, constraints={"type": "eq", "fun": lambda p: 1.0})


def test_differentiable_solution_refuses_bounds_and_constraints() -> None:
    lam = torch.tensor(1.0, requires_grad=True)
    x = torch.ones(2, dtype=torch.float64)

    def fun(p, lam):
        return lam * (p**2).sum()

    with pytest.raises(ValueError, match=r"args requires grad.*bounded or constrained optimum"):
        minimize(fun, x, args=(lam,), bounds=[(0, 1)] * 2)
    with pytest.raises(ValueError, match=r"args requires grad.*bounded or constrained optimum"):
        minimize(fun, x, args=(lam,), constraints={"type": "ineq", "fun": lambda p: p[0]})
    # no grad wanted: the same call is a plain solve
    with torch.no_grad():
        sol, _ = minimize(fun, x, args=(lam,), bounds=[(0.5, 1)] * 2)
    torch.testing.assert_close(sol, torch.full((2,), 0.5, dtype=torch.float64))
