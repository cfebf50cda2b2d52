"""scipy's global optimizers on a :class:`ScipyObjective`: the one body behind both APIs.

The functional wrappers (:mod:`torchopt_lite.interop.scipy_global`, ``fun(params, *args)``) and
:class:`~torchopt_lite.interop.ScipyGlobalMinimizer` (``closure()`` over parameters) differ in
how a point is evaluated and in the language of constraints (torch functions of the tree, or
scipy's own over the packed vector); everything else is here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from torchopt_lite.interop._constraints import convert_constraints
from torchopt_lite.interop._methods import GRADIENT_FREE, derivative_kwargs, resolve_method
from torchopt_lite.interop._objective import ScipyObjective

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

DERIVATIVE_KEYS = ("jac", "hess", "hessp")


def check_local_kwargs(
    minimizer_kwargs: dict[str, Any] | None, default_method: str | None, caller: str
) -> tuple[dict[str, Any], str, str]:
    """A copy of ``minimizer_kwargs`` and its local method ``(as given, lower-case)``.

    Derivatives and ``args`` come from us, so they must not be given.
    """
    if minimizer_kwargs is not None and not isinstance(minimizer_kwargs, dict):
        raise TypeError(
            f"{caller}: minimizer_kwargs must be a dict; got {type(minimizer_kwargs).__name__}."
        )
    kwargs = dict(minimizer_kwargs or {})
    for key in (*DERIVATIVE_KEYS, "args"):
        if key in kwargs:
            hint = f"pass args= to {caller}" if key == "args" else "autograd computes it"
            raise ValueError(f"{caller}: minimizer_kwargs[{key!r}] must not be given; {hint}.")
    method, meth = resolve_method(
        kwargs.get("method", default_method),
        f"{caller}: minimizer_kwargs",
        bounds=kwargs.get("bounds"),
        constraints=kwargs.get("constraints", ()),
    )
    return kwargs, method, meth


def local_kwargs(
    objective: ScipyObjective,
    minimizer_kwargs: dict[str, Any] | None,
    default_method: str | None,
    *,
    torch_constraints: bool,
) -> tuple[dict[str, Any], str]:
    """``minimizer_kwargs`` with the derivatives its method uses filled in from ``objective``."""
    kwargs, method, meth = check_local_kwargs(
        minimizer_kwargs, default_method, objective.flat.caller
    )
    objective.method = method
    kwargs["method"] = method
    if torch_constraints and "constraints" in kwargs:
        kwargs["constraints"] = convert_constraints(kwargs["constraints"], objective.flat)
    derivatives = derivative_kwargs(objective, meth)
    del derivatives["fun"]
    kwargs.update(derivatives)
    return kwargs, meth


def bounds_arrays(bounds: Any, n: int, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``, each of shape ``(n,)``, of a ``Bounds`` or ``(min, max)`` pairs."""
    from scipy.optimize import Bounds

    if isinstance(bounds, Bounds):
        lower, upper = np.atleast_1d(bounds.lb), np.atleast_1d(bounds.ub)
        lower, upper = (np.full(n, b[0]) if b.shape == (1,) else b for b in (lower, upper))
    else:
        pairs = np.asarray(bounds, dtype=np.float64)
        lower, upper = (pairs[:, 0], pairs[:, 1]) if pairs.ndim == 2 else (pairs, pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            lower = upper = np.empty(0)  # not pairs: reported below
    if lower.shape != (n,) or upper.shape != (n,):
        got = np.shape(bounds.lb if isinstance(bounds, Bounds) else bounds)
        raise ValueError(
            f"{caller}: bounds must give {n} (min, max) pairs, one per entry of the packed "
            f"parameters; got shape {got}."
        )
    return lower, upper


def basinhopping(
    optimize: ModuleType,
    objective: ScipyObjective,
    x0: np.ndarray,
    *,
    minimizer_kwargs: dict[str, Any] | None,
    callback: Callable[..., Any] | None,
    torch_constraints: bool,
    **kwargs: Any,
) -> OptimizeResult:
    """:func:`scipy.optimize.basinhopping` with local searches on ``objective``'s derivatives."""
    local, meth = local_kwargs(
        objective, minimizer_kwargs, None, torch_constraints=torch_constraints
    )
    func = objective.value if meth in GRADIENT_FREE else objective.value_with_grad
    return optimize.basinhopping(func, x0, minimizer_kwargs=local, callback=callback, **kwargs)


def differential_evolution(
    optimize: ModuleType,
    objective: ScipyObjective,
    func: Callable[..., Any],
    x0: np.ndarray,
    *,
    bounds: Any,
    constraints: Any,
    polish: bool | Callable[..., Any],
    vectorized: bool,
    callback: Callable[..., Any] | None,
    **kwargs: Any,
) -> OptimizeResult:
    """:func:`scipy.optimize.differential_evolution` on ``func``, polished with the gradient.

    ``constraints`` are scipy-ready; ``polish=True`` is a local L-BFGS-B (trust-constr with
    constraints) with ``objective``'s gradient.
    """
    if vectorized:
        kwargs.setdefault("updating", "deferred")  # what scipy switches to, without its warning
    if polish is True:
        method = "trust-constr" if constraints else "L-BFGS-B"
        polish = functools.partial(optimize.minimize, method=method, jac=objective.grad)
    return optimize.differential_evolution(
        func,
        bounds,
        constraints=constraints,
        polish=polish,
        vectorized=vectorized,
        x0=x0,
        callback=callback,
        **kwargs,
    )


def check_shgo_options(options: dict[str, Any] | None, caller: str) -> None:
    """shgo's ``options`` must leave the local searches' derivatives to us."""
    for key in DERIVATIVE_KEYS:
        if options is not None and key in options:
            raise ValueError(
                f"{caller}: options[{key!r}] must not be given; autograd computes it for the "
                "local searches."
            )


def shgo(
    optimize: ModuleType,
    objective: ScipyObjective,
    *,
    bounds: Any,
    constraints: Any,
    minimizer_kwargs: dict[str, Any] | None,
    options: dict[str, Any] | None,
    callback: Callable[..., Any] | None,
    torch_constraints: bool,
    **kwargs: Any,
) -> OptimizeResult:
    """:func:`scipy.optimize.shgo` with local searches (SLSQP by default) on the derivatives."""
    check_shgo_options(options, objective.flat.caller)
    local, _ = local_kwargs(
        objective, minimizer_kwargs, "SLSQP", torch_constraints=torch_constraints
    )
    return optimize.shgo(
        objective.value,
        bounds,
        constraints=constraints or None,
        minimizer_kwargs=local,
        options=options,
        callback=callback,
        **kwargs,
    )


def dual_annealing(
    optimize: ModuleType,
    objective: ScipyObjective,
    x0: np.ndarray,
    *,
    bounds: Any,
    minimizer_kwargs: dict[str, Any] | None,
    callback: Callable[..., Any] | None,
    torch_constraints: bool,
    **kwargs: Any,
) -> OptimizeResult:
    """:func:`scipy.optimize.dual_annealing`; local searches default to scipy's L-BFGS-B."""
    if minimizer_kwargs is None:
        lower, upper = bounds_arrays(bounds, objective.flat.size, objective.flat.caller)
        minimizer_kwargs = {
            "method": "L-BFGS-B",
            "bounds": list(zip(lower, upper, strict=True)),
            "options": {"maxiter": min(max(6 * objective.flat.size, 100), 1000)},
        }
    local, _ = local_kwargs(
        objective, minimizer_kwargs, "L-BFGS-B", torch_constraints=torch_constraints
    )
    return optimize.dual_annealing(
        objective.value, bounds, minimizer_kwargs=local, callback=callback, x0=x0, **kwargs
    )
