"""Global optimizers: each wrapper reproduces scipy's own run given closed-form derivatives."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.optimize as so
import torch

from torchopt_lite import interop

BOUNDS = [(-2.0, 2.0)] * 3
X0 = np.array([1.0, 0.5, 1.5])


def well_t(p):
    """Tilted double well per coordinate; the global minimum is at x_i = -1.0356."""
    return ((p["x"] ** 2 - 1) ** 2 + 0.3 * p["x"]).sum()


def well(x):
    return float(np.sum((x**2 - 1) ** 2 + 0.3 * x))


def well_jac(x):
    return 4 * x * (x**2 - 1) + 0.3


def well_hessp(x, p):
    return (12 * x**2 - 4) * p


X_STAR = so.minimize(well, -np.ones(3), jac=well_jac, tol=1e-12).x


def _params():
    return {"x": torch.tensor(X0)}


@pytest.mark.parametrize(
    ("method", "reference"),
    [
        ("L-BFGS-B", {"jac": well_jac}),
        ("Newton-CG", {"jac": well_jac, "hessp": well_hessp}),
        ("Nelder-Mead", {}),
    ],
)
def test_basinhopping_matches_scipy(method: str, reference: dict) -> None:
    kw = {"niter": 8, "stepsize": 1.0, "rng": 0}
    ref = so.basinhopping(well, X0, minimizer_kwargs={"method": method, **reference}, **kw)
    seen: list = []
    sol, res = interop.basinhopping(
        well_t,
        _params(),
        minimizer_kwargs={"method": method},
        callback=lambda p, f, accept: seen.append((p, f, accept)),
        **kw,
    )
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(sol["x"].numpy(), res.x)
    # one call for the initial local search, then one per hop
    assert len(seen) == 9 and set(seen[0][0]) == {"x"} and isinstance(seen[0][2], bool)
    if method != "Nelder-Mead":
        np.testing.assert_allclose(res.x, X_STAR, atol=1e-4)


def test_basinhopping_default_local_method_is_bfgs() -> None:
    kw = {"niter": 3, "stepsize": 1.0, "rng": 1}
    ref = so.basinhopping(well, X0, minimizer_kwargs={"jac": well_jac}, **kw)
    _, res = interop.basinhopping(well_t, _params(), **kw)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    assert res.lowest_optimization_result.nit > 0  # BFGS reports iterations


@pytest.mark.parametrize("vectorized", [False, True])
def test_differential_evolution_matches_scipy(vectorized: bool) -> None:
    kw = {"maxiter": 15, "popsize": 6, "rng": 0, "updating": "deferred"}
    polish = functools.partial(so.minimize, method="L-BFGS-B", jac=well_jac)
    ref = so.differential_evolution(well, BOUNDS, polish=polish, x0=X0, **kw)
    _, res = interop.differential_evolution(
        well_t, _params(), bounds=BOUNDS, vectorized=vectorized, **kw
    )
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.x, X_STAR, atol=1e-5)  # polished with the gradient
    assert res.jac is not None and np.abs(res.jac).max() < 1e-4


def test_differential_evolution_constraint_and_callback() -> None:
    kw = {"maxiter": 10, "popsize": 5, "rng": 0}
    nlc = so.NonlinearConstraint(lambda p: (p["x"] ** 2).sum(), 0.0, 3.0)
    ref_nlc = so.NonlinearConstraint(lambda x: np.array([x @ x]), 0.0, 3.0,
                                     jac=lambda x: 2 * x[None])  # fmt: skip
    polish = functools.partial(so.minimize, method="trust-constr", jac=well_jac)
    ref = so.differential_evolution(well, BOUNDS, constraints=ref_nlc, polish=polish, x0=X0,
                                    **kw)  # fmt: skip
    seen: list = []
    _, res = interop.differential_evolution(
        well_t, _params(), bounds=BOUNDS, constraints=nlc,
        callback=lambda p, convergence: seen.append(p), **kw,
    )  # fmt: skip
    # trust-constr polishing: barrier iterations amplify last-bit differences
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-6)
    assert res.x @ res.x == pytest.approx(3.0, abs=1e-5)  # active: X_STAR lies outside
    assert len(seen) >= 1 and set(seen[0]) == {"x"}


def test_shgo_matches_scipy() -> None:
    ref = so.shgo(well, BOUNDS, minimizer_kwargs={"method": "SLSQP", "jac": well_jac})
    seen: list = []
    _, res = interop.shgo(well_t, _params(), bounds=BOUNDS, callback=seen.append)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.x, X_STAR, atol=1e-4)
    assert len(res.xl) == len(ref.xl)
    assert seen and set(seen[0]) == {"x"}


def test_shgo_with_constraint() -> None:
    cons = {"type": "ineq", "fun": lambda p: p["x"].sum() + 2.5}
    ref_cons = {"type": "ineq", "fun": lambda x: x.sum() + 2.5, "jac": lambda x: np.ones(3)}
    ref = so.shgo(well, BOUNDS, constraints=ref_cons,
                  minimizer_kwargs={"method": "SLSQP", "jac": well_jac})  # fmt: skip
    _, res = interop.shgo(well_t, _params(), bounds=BOUNDS, constraints=cons)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-8)
    assert res.x.sum() == pytest.approx(-2.5, abs=1e-6)  # active constraint


def test_dual_annealing_matches_scipy() -> None:
    kw = {"maxiter": 60, "rng": 0}
    local = {
        "method": "L-BFGS-B",
        "bounds": BOUNDS,
        "options": {"maxiter": 100},
        "jac": well_jac,
    }
    ref = so.dual_annealing(well, BOUNDS, minimizer_kwargs=local, x0=X0, **kw)
    seen: list = []
    _, res = interop.dual_annealing(
        well_t, _params(), bounds=so.Bounds(np.full(3, -2.0), np.full(3, 2.0)),
        callback=lambda p, f, context: seen.append(p), **kw,
    )  # fmt: skip
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.x, X_STAR, atol=1e-4)
    assert all(set(p) == {"x"} for p in seen)


def test_dual_annealing_custom_local_method() -> None:
    kw = {"maxiter": 10, "rng": 0}
    ref = so.dual_annealing(well, BOUNDS, x0=X0,
                            minimizer_kwargs={"method": "BFGS", "jac": well_jac}, **kw)  # fmt: skip
    _, res = interop.dual_annealing(well_t, _params(), bounds=BOUNDS,
                                    minimizer_kwargs={"method": "BFGS"}, **kw)  # fmt: skip
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)


def test_errors() -> None:
    p = _params()
    with pytest.raises(ValueError, match=r"basinhopping: minimizer_kwargs\['jac'\] must not"):
        interop.basinhopping(well_t, p, minimizer_kwargs={"jac": well_jac})
    with pytest.raises(ValueError, match=r"minimizer_kwargs\['args'\] must not be given; pass"):
        interop.dual_annealing(well_t, p, bounds=BOUNDS, minimizer_kwargs={"args": (1,)})
    with pytest.raises(TypeError, match=r"shgo: minimizer_kwargs must be a dict; got list"):
        interop.shgo(well_t, p, bounds=BOUNDS, minimizer_kwargs=[])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"basinhopping: minimizer_kwargs: unknown method 'x'"):
        interop.basinhopping(well_t, p, minimizer_kwargs={"method": "x"})
    with pytest.raises(ValueError, match=r"shgo: options\['jac'\] must not be given"):
        interop.shgo(well_t, p, bounds=BOUNDS, options={"jac": True})
    with pytest.raises(TypeError, match=r"basinhopping: callback must be callable; got int"):
        interop.basinhopping(well_t, p, callback=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"differential_evolution: params must be float32 or"):
        interop.differential_evolution(well_t, {"x": torch.ones(3).half()}, bounds=BOUNDS)
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"basinhopping: fun's output does not depend on the "
                                         r"parameters"):  # fmt: skip
        interop.basinhopping(lambda q: well_t({"x": w}), p, niter=1)
    with pytest.raises(ValueError, match=r"shgo: hessian_backend must be one of 'autograd', "
                                         r"'func'; got 'forward'"):  # fmt: skip
        interop.shgo(well_t, p, bounds=BOUNDS, hessian_backend="forward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dual_annealing: bounds must give 3 \(min, max\) "
                                         r"pairs.*got shape \(2, 2\)"):  # fmt: skip
        interop.dual_annealing(well_t, p, bounds=BOUNDS[:2])
    torch.testing.assert_close(p["x"], torch.tensor(X0), rtol=0, atol=0)
    assert w.grad is None


@pytest.mark.parametrize("backend", ["autograd", "func"])
def test_local_second_derivatives_from_either_backend(backend: str) -> None:
    local = {"method": "trust-krylov"}
    reference = {**local, "jac": well_jac, "hessp": well_hessp}
    kw = {"niter": 3, "stepsize": 1.0, "rng": 0}
    ref = so.basinhopping(well, X0, minimizer_kwargs=reference, **kw)
    _, res = interop.basinhopping(
        well_t, _params(), minimizer_kwargs=local, hessian_backend=backend, **kw
    )
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-9)
    ref_s = so.shgo(well, BOUNDS, minimizer_kwargs=reference)
    _, res_s = interop.shgo(
        well_t, _params(), bounds=BOUNDS, minimizer_kwargs=local, hessian_backend=backend
    )
    np.testing.assert_allclose(res_s.x, ref_s.x, rtol=0, atol=1e-9)
