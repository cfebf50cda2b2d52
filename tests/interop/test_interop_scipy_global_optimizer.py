"""ScipyGlobalMinimizer: global searches over module parameters, written back in place."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import torch

from torchopt_lite import interop
from torchopt_lite.interop import ScipyGlobalMinimizer
from torchopt_lite.interop._closure import ClosureObjective
from torchopt_lite.interop._flat import FlatParams

START = (1.0, 0.5, 1.5)  # every entry in the basin of the local minimum near +0.96
BOUNDS = [(-2.0, 2.0)] * 3
# per entry, (x^2 - 1)^2 + 0.3 x has its global minimum at x = -1.0356 (f = -0.3069...)
X_STAR = so.minimize(lambda x: (x[0] ** 2 - 1) ** 2 + 0.3 * x[0], [-1.0], tol=1e-14).x[0]


def well(x):
    return ((x**2 - 1) ** 2 + 0.3 * x).sum()


def _model() -> torch.nn.Linear:
    """Three entries in two parameters: weight (1, 2) and bias (1,), packed in that order."""
    model = torch.nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([START[:2]]))
        model.bias.copy_(torch.tensor(START[2:]))
    return model


def _closure(model, opt, calls=None):
    def closure():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = well(model.weight).add(well(model.bias))
        loss.backward()
        return loss

    return closure


def _packed(model) -> np.ndarray:
    return np.r_[model.weight.detach().numpy().ravel(), model.bias.detach().numpy()]


CASES = {
    "basinhopping": {"niter": 10, "stepsize": 1.5, "rng": 0},
    "differential_evolution": {"bounds": BOUNDS, "popsize": 8, "rng": 0},
    "shgo": {"bounds": BOUNDS},
    "dual_annealing": {"bounds": BOUNDS, "maxiter": 50, "rng": 0},
}


def _functional(method: str, kwargs: dict):
    fun = getattr(interop, method)
    return fun(well, torch.tensor(START, dtype=torch.float64), **kwargs)


@pytest.mark.parametrize("method", list(CASES))
def test_finds_the_global_minimum_and_writes_it_back(method: str) -> None:
    model = _model()
    seen: list = []
    opt = ScipyGlobalMinimizer(model.parameters(), method, callback=lambda p, *a, **k:
                               seen.append(p), **CASES[method])  # fmt: skip
    loss = opt.step(_closure(model, opt))
    assert opt.result is not None
    # the module holds the solution, exactly scipy's best point
    np.testing.assert_array_equal(_packed(model), opt.result.x)
    np.testing.assert_allclose(opt.result.x, np.full(3, X_STAR), rtol=0, atol=1e-5)
    assert float(loss) == opt.result.fun == pytest.approx(3 * well(torch.tensor(X_STAR)).item())
    assert seen and [t.shape for t in seen[0]] == [(1, 2), (1,)]
    # the functional wrapper runs the same code on fun(params): the same iterates
    _, ref = _functional(method, CASES[method])
    np.testing.assert_allclose(opt.result.x, ref.x, rtol=0, atol=1e-12)


def test_float32_module_with_local_options() -> None:
    model = _model().float()
    opt = ScipyGlobalMinimizer(
        model.parameters(),
        "shgo",
        bounds=so.Bounds(-2.0, 2.0),
        minimizer_kwargs={"method": "L-BFGS-B", "bounds": BOUNDS},
        options={"ftol": 1e-10},
    )
    opt.step(_closure(model, opt))
    assert model.weight.dtype == torch.float32
    # float32 losses and gradients: the optimum to float32 accuracy
    np.testing.assert_allclose(_packed(model), np.full(3, X_STAR), rtol=0, atol=1e-3)


def test_constraints_pass_through_on_the_packed_vector() -> None:
    model = _model()
    cons = so.LinearConstraint(np.ones((1, 3)), -2.5, np.inf)  # sum(x) >= -2.5
    kwargs = {"bounds": BOUNDS, "constraints": cons, "popsize": 10, "rng": 0}
    opt = ScipyGlobalMinimizer(model.parameters(), "differential_evolution", **kwargs)
    opt.step(_closure(model, opt))
    # the constraint is active and splits evenly: x_i = -2.5 / 3 (f = -0.4699 < -0.3167 at
    # two entries in the global well and one in the other)
    np.testing.assert_allclose(_packed(model), np.full(3, -2.5 / 3), rtol=0, atol=1e-6)
    _, ref = _functional("differential_evolution", kwargs)
    np.testing.assert_allclose(opt.result.x, ref.x, rtol=0, atol=1e-12)


def test_repeated_steps_start_from_the_parameters() -> None:
    model = _model()
    opt = ScipyGlobalMinimizer(model.parameters(), "dual_annealing", bounds=BOUNDS, maxiter=5,
                               no_local_search=True, rng=0)  # fmt: skip
    closure = _closure(model, opt)
    first = float(opt.step(closure))
    second = float(opt.step(closure))
    # the second run is seeded at the first one's best point and keeps the best it sees
    assert second <= first
    assert opt.param_groups[0]["kwargs"] == {"maxiter": 5, "no_local_search": True, "rng": 0}


def _unchanged(model) -> None:
    np.testing.assert_array_equal(_packed(model), np.array(START))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (("annealing",), {}, ValueError, r"unknown method 'annealing'; expected one of "),
        ((so.shgo,), {}, TypeError, r"method must be the name of a scipy global optimizer"),
        (("shgo",), {}, ValueError, r"method 'shgo' needs bounds: .* 3 \(min, max\) pairs"),
        (("basinhopping",), {"bounds": BOUNDS}, ValueError, r"'basinhopping' takes no bounds"),
        (
            ("dual_annealing",),
            {"bounds": BOUNDS[:2]},
            ValueError,
            r"bounds must give 3 \(min, max\) pairs.*got shape \(2, 2\)",
        ),
        (
            ("dual_annealing",),
            {"bounds": so.Bounds([-1, -1], [1, 1])},
            ValueError,
            r"bounds must give 3 .*got shape \(2,\)",
        ),
        (("shgo",), {"bounds": [-2, 2, -2]}, ValueError, r"bounds must give 3 .*got shape \(3,\)"),
        (
            ("dual_annealing",),
            {"bounds": BOUNDS, "constraints": {"type": "eq", "fun": np.sum}},
            ValueError,
            r"method 'dual_annealing' takes no constraints",
        ),
        (
            ("differential_evolution",),
            {"bounds": BOUNDS, "minimizer_kwargs": {"method": "BFGS"}},
            ValueError,
            r"'differential_evolution' takes no minimizer_kwargs.*polish=False",
        ),
        (
            ("basinhopping",),
            {"minimizer_kwargs": {"method": "Newton-CG"}},
            ValueError,
            r"minimizer_kwargs: method 'Newton-CG' needs second derivatives",
        ),
        (
            ("basinhopping",),
            {"minimizer_kwargs": {"jac": True}},
            ValueError,
            r"minimizer_kwargs\['jac'\] must not be given",
        ),
        (
            ("shgo",),
            {"bounds": BOUNDS, "options": {"jac": True}},
            ValueError,
            r"options\['jac'\] must not be given",
        ),
        (
            ("differential_evolution",),
            {"bounds": BOUNDS, "popsze": 6},
            TypeError,
            r"scipy.optimize.differential_evolution has no keyword argument 'popsze'; it "
            r"takes .*popsize",
        ),
        (
            ("differential_evolution",),
            {"bounds": BOUNDS, "workers": 2},
            ValueError,
            r"workers= is not accepted: the closure writes into these parameters",
        ),
        (
            ("dual_annealing",),
            {"bounds": BOUNDS, "x0": np.zeros(3)},
            ValueError,
            r"x0= is not accepted: the parameters' current values are the starting point",
        ),
        (("basinhopping",), {"callback": 3}, TypeError, r"callback must be callable; got int"),
    ],
)
def test_construction_errors(args, kwargs, error, match) -> None:
    model = _model()
    with pytest.raises(error, match=f"ScipyGlobalMinimizer: {match}"):
        ScipyGlobalMinimizer(model.parameters(), *args, **kwargs)
    _unchanged(model)


def test_parameter_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"doesn't support per-parameter options"):
        ScipyGlobalMinimizer([{"params": [model.weight]}, {"params": [model.bias]}], "shgo",
                             bounds=BOUNDS)  # fmt: skip
    with pytest.raises(TypeError, match=r"ScipyGlobalMinimizer: params must be float32 or"):
        ScipyGlobalMinimizer(torch.nn.Linear(2, 1).half().parameters(), "shgo", bounds=BOUNDS)
    _unchanged(model)


def test_step_errors_leave_the_parameters_unchanged() -> None:
    model = _model()
    opt = ScipyGlobalMinimizer(model.parameters(), "basinhopping", niter=2, rng=0)
    with pytest.raises(TypeError, match=r"ScipyGlobalMinimizer.step: a closure is required"):
        opt.step()

    def no_backward():
        return well(model.weight) + well(model.bias)

    with pytest.raises(ValueError, match=r"no parameter has a \.grad after closure\(\)"):
        opt.step(no_backward)
    with pytest.raises(ValueError, match=r"closure must return a scalar .*got shape \(1, 2\)"):
        opt.step(lambda: model.weight * 2)
    _unchanged(model)
    assert opt.result is None

    # a closure that fails in the middle of the search: the starting values come back
    calls: list = []
    closure = _closure(model, opt, calls)

    def fails_later():
        if len(calls) == 20:
            raise RuntimeError("simulator crashed")
        return closure()

    with pytest.raises(RuntimeError, match=r"simulator crashed"):
        opt.step(fails_later)
    assert len(calls) == 20
    _unchanged(model)

    outside = ScipyGlobalMinimizer(model.parameters(), "differential_evolution",
                                   bounds=[(-2.0, 2.0), (-2.0, 0.0), (-2.0, 1.0)])  # fmt: skip
    with pytest.raises(ValueError, match=r"'differential_evolution' starts from the parameters, "
                                         r"which must lie within bounds; entries \[1, 2\] "
                                         r"of the packed vector do not"):  # fmt: skip
        outside.step(_closure(model, outside))
    _unchanged(model)


def test_closure_objective_has_no_second_derivatives() -> None:
    model = _model()
    params = list(model.parameters())
    objective = ClosureObjective(params, lambda: well(params[0]), FlatParams(params, "t"), "x")
    match = r"t: method 'x' needs second derivatives, which a closure .* cannot give"
    with pytest.raises(ValueError, match=match):
        objective.hessp(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match=r"t: method 'x' needs second derivatives"):
        objective.hess(np.zeros(3))
