"""``ScipyGlobalMinimizer``: a torch.optim.Optimizer whose ``step(closure)`` searches globally."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from torchopt_lite.interop import _global
from torchopt_lite.interop._closure import ClosureObjective, ClosureOptimizer, check_first_order
from torchopt_lite.interop._methods import import_scipy_optimize

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

METHODS = ("basinhopping", "differential_evolution", "shgo", "dual_annealing")
NEEDS_BOUNDS = frozenset({"differential_evolution", "shgo", "dual_annealing"})
TAKES_CONSTRAINTS = frozenset({"differential_evolution", "shgo"})
STARTS_IN_BOUNDS = frozenset({"differential_evolution", "dual_annealing"})  # x0 within bounds
# keywords of the scipy functions that this class sets itself, and why
SET_HERE = {
    "func": "the closure is the objective",
    "x0": "the parameters' current values are the starting point",
    "args": "the closure takes no arguments; capture them in it",
    "vectorized": "the closure evaluates one point at a time",
    "workers": "the closure writes into these parameters, so it must run in this process",
}


class ScipyGlobalMinimizer(ClosureOptimizer):
    r"""Search for the global minimum of a closure's loss over ``params`` with scipy.

    The parameters are packed into one float64 vector :math:`x` (in order, each row-major), and
    one :meth:`step` runs one of scipy's global optimizers on

    .. math::
        \min_{x} \ell(x), \qquad \ell(x) = \mathtt{closure}() \text{ with the parameters set
        to } x, \quad l_j \le x_j \le u_j,

    then writes the best point found into the parameters; :attr:`result` holds scipy's
    :class:`~scipy.optimize.OptimizeResult`. Each evaluation writes :math:`x` into the
    parameters and calls ``closure()``, which zeroes the grads, computes the loss, calls
    ``loss.backward()`` and returns the loss (as for :class:`torch.optim.LBFGS`); the packed
    ``.grad``\ s (``None`` counts as zero) drive the local searches.

    * ``'basinhopping'`` (:func:`scipy.optimize.basinhopping`): random hops from the current
      minimum, each followed by a local search and a Metropolis acceptance test. No bounds;
      bound the local searches through ``minimizer_kwargs``.
    * ``'differential_evolution'``: a population within ``bounds`` evolved by mutation,
      crossover and selection, seeded with the current parameters and polished by L-BFGS-B
      (trust-constr with constraints) with the closure's gradient.
    * ``'shgo'``: simplicial homology global optimization: samples ``bounds``, finds every
      basin and runs a local search (SLSQP by default) in each.
    * ``'dual_annealing'``: generalized simulated annealing from the current parameters, with
      L-BFGS-B local searches within ``bounds`` by default.

    The same searches over a tree of tensors with a torch objective are the functions
    :func:`~torchopt_lite.interop.basinhopping`, ...; both run the same code.

    Args:
        params: an iterable of float32/float64 tensors (one parameter group), all on one device.
        method: ``'basinhopping'``, ``'differential_evolution'``, ``'shgo'`` or
            ``'dual_annealing'``.
        bounds: a :class:`scipy.optimize.Bounds` or one ``(min, max)`` pair per entry of the
            packed vector; required by all methods but basinhopping, refused by it. The
            parameters must lie within them where the method starts from them.
        constraints: scipy constraints over the packed numpy vector, passed as they are
            (differential evolution and shgo).
        minimizer_kwargs: the local searches' :func:`scipy.optimize.minimize` keywords
            (``method``, ``bounds``, ``options``, ...; not for differential evolution). The
            gradient comes from the closure; methods that need second derivatives are refused.
        callback: called as scipy calls it, with the point as a list of tensors shaped like
            ``params`` (new tensors): ``callback(params, f, accept)`` (basinhopping),
            ``callback(params, convergence=...)`` (differential evolution),
            ``callback(params)`` (shgo), ``callback(params, f, context)`` (dual annealing).
        **kwargs: keyword arguments of the scipy function (``niter``, ``stepsize``,
            ``maxiter``, ``popsize``, ``polish``, ``rng``, ``options``, ``n``, ...), checked
            against its signature here, not at the first step.

    Raises:
        ValueError: an unknown method; bounds missing, refused or of the wrong length;
            constraints or minimizer_kwargs the method does not take; a local method that
            needs second derivatives; a keyword this class sets itself; parameter groups.
        TypeError: a method that is not a string; a keyword the scipy function does not take;
            parameters that are not float32/float64 tensors.

    Example:
        >>> model = torch.nn.Linear(1, 1, bias=False).double()
        >>> def closure():  # a tilted double well: minima near -1 (global) and +1
        ...     opt.zero_grad()
        ...     loss = ((model.weight**2 - 1) ** 2 + 0.3 * model.weight).sum()
        ...     loss.backward()
        ...     return loss
        >>> opt = torchopt_lite.interop.ScipyGlobalMinimizer(
        ...     model.parameters(), "dual_annealing", bounds=[(-2, 2)], maxiter=50, rng=0)
        >>> loss = opt.step(closure)
        >>> round(model.weight.item(), 4), bool(opt.result.success)
        (-1.0356, True)

    Note:
        As with :class:`~torchopt_lite.interop.ScipyMinimizer`, a step is a complete scipy run
        from the current values, with no state kept between steps. If the run raises (a bad
        closure, a ``KeyboardInterrupt``), the parameters get their starting values back.
        Evaluations that need no gradient still run the closure's ``backward()``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        method: str = "differential_evolution",
        *,
        bounds: Any = None,
        constraints: Any = (),
        minimizer_kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> None:
        caller = "ScipyGlobalMinimizer"
        optimize = import_scipy_optimize(caller)
        if not isinstance(method, str):
            raise TypeError(
                f"{caller}: method must be the name of a scipy global optimizer; "
                f"got {type(method).__name__}."
            )
        if method not in METHODS:
            raise ValueError(
                f"{caller}: unknown method {method!r}; expected one of "
                f"{', '.join(map(repr, METHODS))}."
            )
        defaults = {
            "method": method,
            "bounds": bounds,
            "constraints": constraints,
            "minimizer_kwargs": minimizer_kwargs,
            "kwargs": kwargs,
        }
        super().__init__(params, defaults, callback, caller)
        n = self.num_entries
        self.param_groups[0]["bounds"] = _checked_bounds(method, bounds, n, caller)
        if constraints and method not in TAKES_CONSTRAINTS:
            raise ValueError(
                f"{caller}: method {method!r} takes no constraints; use "
                "'differential_evolution' or 'shgo'."
            )
        if minimizer_kwargs is not None and method == "differential_evolution":
            raise ValueError(
                f"{caller}: 'differential_evolution' takes no minimizer_kwargs: its only local "
                "search is the final polish (L-BFGS-B; pass polish=False to skip it)."
            )
        if method != "differential_evolution":
            default = {"shgo": "SLSQP", "dual_annealing": "L-BFGS-B"}.get(method)
            _, local, meth = _global.check_local_kwargs(minimizer_kwargs, default, caller)
            check_first_order(local, meth, f"{caller}: minimizer_kwargs")
        _check_kwargs(optimize, method, kwargs, caller)

    def _run(
        self,
        optimize: ModuleType,
        objective: ClosureObjective,
        x0: np.ndarray,
        callback: Callable[..., Any] | None,
    ) -> OptimizeResult:
        group = self.param_groups[0]
        if group["method"] in STARTS_IN_BOUNDS:  # before scipy writes anything
            _check_start(x0, group["bounds"], group["method"], objective.flat.caller)
        return _run(optimize, objective, x0, group, callback)


def _run(
    optimize: ModuleType,
    objective: ClosureObjective,
    x0: np.ndarray,
    group: dict[str, Any],
    callback: Callable[..., Any] | None,
) -> OptimizeResult:
    """The scipy run of ``group``'s method (the code the functional API runs too)."""
    method, kwargs = group["method"], dict(group["kwargs"])
    local = group["minimizer_kwargs"]
    if method == "basinhopping":
        return _global.basinhopping(
            optimize,
            objective,
            x0,
            minimizer_kwargs=local,
            callback=callback,
            torch_constraints=False,
            **kwargs,
        )
    if method == "differential_evolution":
        return _global.differential_evolution(
            optimize,
            objective,
            objective.value,
            x0,
            bounds=group["bounds"],
            constraints=group["constraints"],
            polish=kwargs.pop("polish", True),
            vectorized=False,
            callback=callback,
            **kwargs,
        )
    if method == "shgo":
        return _global.shgo(
            optimize,
            objective,
            bounds=group["bounds"],
            constraints=group["constraints"],
            minimizer_kwargs=local,
            options=kwargs.pop("options", None),
            callback=callback,
            torch_constraints=False,
            **kwargs,
        )
    return _global.dual_annealing(
        optimize,
        objective,
        x0,
        bounds=group["bounds"],
        minimizer_kwargs=local,
        callback=callback,
        torch_constraints=False,
        **kwargs,
    )


def _checked_bounds(method: str, bounds: Any, n: int, caller: str) -> Any:
    """``bounds``, checked; a ``Bounds`` with scalar limits gets one limit per entry."""
    if bounds is None and method in NEEDS_BOUNDS:
        raise ValueError(
            f"{caller}: method {method!r} needs bounds: a scipy.optimize.Bounds or {n} "
            "(min, max) pairs, one per entry of the packed parameters."
        )
    if bounds is not None and method not in NEEDS_BOUNDS:
        raise ValueError(
            f"{caller}: 'basinhopping' takes no bounds; bound its local searches with "
            "minimizer_kwargs={'method': 'L-BFGS-B', 'bounds': ...}."
        )
    if bounds is None:
        return None
    lower, upper = _global.bounds_arrays(bounds, n, caller)
    from scipy.optimize import Bounds

    if isinstance(bounds, Bounds):  # scipy's global optimizers read the length of its limits
        keep_feasible = np.broadcast_to(bounds.keep_feasible, (n,))
        return Bounds(lower, upper, keep_feasible=keep_feasible)
    return bounds


def _check_kwargs(optimize: ModuleType, method: str, kwargs: dict[str, Any], caller: str) -> None:
    accepted = set(inspect.signature(getattr(optimize, method)).parameters)
    named = {"bounds", "constraints", "minimizer_kwargs", "callback"}  # ours, by name
    for key in kwargs:
        if key in SET_HERE:
            raise ValueError(f"{caller}: {key}= is not accepted: {SET_HERE[key]}.")
        if key not in accepted:
            takes = ", ".join(sorted(accepted - set(SET_HERE) - named))
            raise TypeError(
                f"{caller}: scipy.optimize.{method} has no keyword argument {key!r}; it takes "
                f"{takes}."
            )
    if method == "shgo":
        _global.check_shgo_options(kwargs.get("options"), caller)


def _check_start(x0: np.ndarray, bounds: Any, method: str, caller: str) -> None:
    lower, upper = _global.bounds_arrays(bounds, x0.size, caller)
    outside = np.flatnonzero((x0 < lower) | (x0 > upper))
    if outside.size:
        raise ValueError(
            f"{caller}: {method!r} starts from the parameters, which must lie within bounds; "
            f"entries {outside.tolist()} of the packed vector do not (values "
            f"{x0[outside].tolist()})."
        )
