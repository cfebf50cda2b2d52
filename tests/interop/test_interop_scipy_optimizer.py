"""ScipyMinimizer: nn.Module training through step(closure) against scipy with closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so
import torch

from tests.interop._interop_problems import Logistic
from torchopt_lite.interop import ScipyMinimizer

PROB = Logistic()
# nn.Linear packs as [weight (1, 3), bias (1,)]; Logistic's references use [b, w].
PERM = np.array([3, 0, 1, 2])


def ref_fun(x):
    return PROB.fun(x[PERM])


def ref_jac(x):
    return PROB.jac(x[PERM])[np.argsort(PERM)]


def _model(dtype=torch.float64) -> torch.nn.Linear:
    model = torch.nn.Linear(3, 1).to(dtype)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


def _closure(model, opt):
    X, y = PROB.Xt.to(model.weight.dtype), PROB.yt.to(model.weight.dtype)

    def closure():
        opt.zero_grad()
        z = model(X).squeeze(-1)
        data = torch.nn.functional.softplus(z) - y * z
        loss = data.mean() + 0.5 * PROB.lam * (model.weight**2).sum()
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "CG", "TNC", "SLSQP", "Nelder-Mead"])
def test_step_matches_scipy(method: str) -> None:
    model = _model()
    opt = ScipyMinimizer(model.parameters(), method=method)
    loss = opt.step(_closure(model, opt))
    jac = None if method == "Nelder-Mead" else ref_jac
    ref = so.minimize(ref_fun, np.zeros(4), jac=jac, method=method)
    assert opt.result is not None and opt.result.success
    # CG and TNC branch on last-bit gradient differences (module backward vs closed form)
    np.testing.assert_allclose(opt.result.x, ref.x, rtol=0, atol=1e-9)
    got = np.r_[model.weight.detach().numpy().ravel(), model.bias.detach().numpy()]
    np.testing.assert_array_equal(got, opt.result.x)  # the module holds the solution
    assert float(loss) == opt.result.fun


def test_float32_module_and_bounds() -> None:
    model = _model(torch.float32)
    bounds = so.Bounds(-np.inf, [np.inf, np.inf, np.inf, 0.2])  # bias <= 0.2 (active)
    opt = ScipyMinimizer(model.parameters(), bounds=bounds)
    opt.step(_closure(model, opt))
    ref = so.minimize(ref_fun, np.zeros(4), jac=ref_jac, method="L-BFGS-B", bounds=bounds)
    assert model.weight.dtype == torch.float32
    assert float(model.bias.detach()) == pytest.approx(0.2)
    # float32 loss and gradients: agreement to float32 optimization accuracy
    np.testing.assert_allclose(opt.result.x, ref.x, rtol=0, atol=1e-4)


def test_callback_and_repeated_steps() -> None:
    model = _model()
    seen: list = []
    opt = ScipyMinimizer(model.parameters(), method="BFGS", callback=seen.append,
                         options={"maxiter": 3})  # fmt: skip
    closure = _closure(model, opt)
    opt.step(closure)
    assert len(seen) == 3 and [t.shape for t in seen[0]] == [(1, 3), (1,)]
    first = opt.result
    opt.step(closure)  # continues from where the first step stopped
    ref = so.minimize(ref_fun, np.zeros(4), jac=ref_jac, method="BFGS")
    assert first.fun > opt.result.fun >= ref.fun - 1e-12


def test_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"ScipyMinimizer: method 'Newton-CG' needs second deriv"):
        ScipyMinimizer(model.parameters(), method="Newton-CG")
    with pytest.raises(ValueError, match=r"ScipyMinimizer: unknown method 'LBFGS'"):
        ScipyMinimizer(model.parameters(), method="LBFGS")
    with pytest.raises(ValueError, match=r"doesn't support per-parameter options"):
        ScipyMinimizer([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(TypeError, match=r"ScipyMinimizer: params must be float32 or float64"):
        ScipyMinimizer(torch.nn.Linear(2, 1).half().parameters())

    opt = ScipyMinimizer(model.parameters())
    with pytest.raises(TypeError, match=r"ScipyMinimizer.step: a closure is required"):
        opt.step()

    def no_backward():
        return (model.weight**2).sum()

    with pytest.raises(ValueError, match=r"no parameter has a \.grad after closure\(\)"):
        opt.step(no_backward)
    with pytest.raises(ValueError, match=r"closure must return a scalar .*got shape \(1, 3\)"):
        opt.step(lambda: model.weight * 2)
    with pytest.raises(TypeError, match=r"ScipyMinimizer: callback must be callable; got int"):
        ScipyMinimizer(model.parameters(), callback=3)  # type: ignore[arg-type]
    assert torch.count_nonzero(model.weight) == 0 and torch.count_nonzero(model.bias) == 0
    assert opt.result is None


def test_failed_run_restores_the_parameters() -> None:
    model = _model()
    opt = ScipyMinimizer(model.parameters(), method="BFGS")
    closure, calls = _closure(model, opt), []

    def fails_later():
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulator crashed")
        return closure()

    with pytest.raises(RuntimeError, match=r"simulator crashed"):
        opt.step(fails_later)
    assert torch.count_nonzero(model.weight) == 0 and torch.count_nonzero(model.bias) == 0
