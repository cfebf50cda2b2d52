"""scipy's global optimizers over a tree of tensors; local searches use autograd derivatives."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

from torchopt_lite.interop import _global
from torchopt_lite.interop._constraints import convert_constraints
from torchopt_lite.interop._flat import FlatParams
from torchopt_lite.interop._methods import import_scipy_optimize
from torchopt_lite.interop._objective import HessianBackend, Objective
from torchopt_lite.typing import Params

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult


def _setup(
    fun: Callable[..., Tensor],
    params: Params,
    args: Any,
    caller: str,
    hessian_backend: HessianBackend = "autograd",
) -> tuple[FlatParams, Objective]:
    flat = FlatParams(params, caller)
    if not isinstance(args, tuple):
        args = (args,)
    return flat, Objective(fun, flat, args, hessian_backend=hessian_backend)


def basinhopping(
    fun: Callable[..., Tensor],
    params: Params,
    *,
    args: Any = (),
    minimizer_kwargs: dict[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    hessian_backend: HessianBackend = "autograd",
    **kwargs: Any,
) -> tuple[Params, OptimizeResult]:
    r"""Basin-hopping (:func:`scipy.optimize.basinhopping`) with autograd local searches.

    Each step perturbs the current minimum, runs a local :func:`scipy.optimize.minimize` from
    there and accepts the new minimum with the Metropolis probability
    :math:`\min\{1, \exp(-(f_{\text{new}} - f_{\text{old}}) / T)\}`.

    Args:
        fun: ``fun(params, *args) -> Tensor``, a scalar.
        params: a tree of float32/float64 tensors: the starting point (not modified).
        args: extra positional arguments of ``fun``.
        minimizer_kwargs: the local search's :func:`scipy.optimize.minimize` keywords
            (``method``, ``bounds``, ``constraints`` written as for
            :func:`~torchopt_lite.interop.minimize`, ``options``, ``tol``); ``jac``, ``hess`` and
            ``hessp`` are filled in from autograd for the method, so they must not be given.
            The default method is scipy's (BFGS, or L-BFGS-B / SLSQP with bounds / constraints).
        callback: ``callback(params, f, accept)`` after each basin-hopping step.
        hessian_backend: second derivatives of local methods that use them, as for
            :func:`~torchopt_lite.interop.minimize`.
        **kwargs: passed to :func:`scipy.optimize.basinhopping` (``niter``, ``T``, ``stepsize``,
            ``take_step``, ``accept_test``, ``rng``, ...). ``take_step`` and ``accept_test``
            see the packed vector.

    Returns:
        ``(solution, result)``: the best minimum as a tree like ``params``, and scipy's result.

    Example:
        >>> def f(p):  # two basins; the global minimum is at x = -1
        ...     return (p**2 - 1) ** 2 + 0.3 * p
        >>> sol, res = torchopt_lite.interop.basinhopping(
        ...     lambda p: f(p).sum(), torch.tensor([1.0]), niter=5, stepsize=1.0, rng=0)
        >>> round(float(sol), 2)
        -1.04
    """
    optimize = import_scipy_optimize("basinhopping")
    flat, objective = _setup(fun, params, args, "basinhopping", hessian_backend)
    result = _global.basinhopping(
        optimize,
        objective,
        flat.pack(params),
        minimizer_kwargs=minimizer_kwargs,
        callback=flat.wrap_callback(callback),
        torch_constraints=True,
        **kwargs,
    )
    return flat.unpack(result.x), result


def differential_evolution(
    fun: Callable[..., Tensor],
    params: Params,
    *,
    bounds: Any,
    args: Any = (),
    constraints: Any = (),
    polish: bool | Callable[..., Any] = True,
    vectorized: bool = False,
    callback: Callable[..., Any] | None = None,
    **kwargs: Any,
) -> tuple[Params, OptimizeResult]:
    r"""Differential evolution (:func:`scipy.optimize.differential_evolution`) over a tree.

    A population :math:`\{x_k\}` inside the bounds evolves by mutation
    :math:`v = x_{r_0} + F\,(x_{r_1} - x_{r_2})`, crossover and greedy selection; ``fun`` is
    only evaluated (under ``torch.no_grad``). The final polish is a local L-BFGS-B (trust-constr
    with constraints) with the autograd gradient.

    Args:
        fun: ``fun(params, *args) -> Tensor``, a scalar.
        params: a tree of float32/float64 tensors giving the solution's structure; its values
            are put in the initial population (scipy's ``x0``), so they must lie in ``bounds``.
        bounds: a :class:`scipy.optimize.Bounds` or ``(min, max)`` pairs over the packed vector.
        args: extra positional arguments of ``fun``.
        constraints: constraints as for :func:`~torchopt_lite.interop.minimize`
            (``NonlinearConstraint`` with a torch function of the tree, ``LinearConstraint``).
        polish: ``True`` polishes with autograd gradients; ``False`` skips it; a callable is
            scipy's ``polish(func, x0, **kwargs)`` on the packed vector.
        vectorized: evaluate a whole population at once with :func:`torch.vmap` over ``fun``
            (``fun`` must be vmappable: no data-dependent Python control flow); it implies
            scipy's ``updating="deferred"`` unless ``updating`` is given.
        callback: ``callback(params, convergence=...)`` after each generation.
        **kwargs: passed to :func:`scipy.optimize.differential_evolution` (``maxiter``,
            ``popsize``, ``tol``, ``rng``, ``strategy``, ...).

    Returns:
        ``(solution, result)``: the best member as a tree like ``params``, and scipy's result.

    Example:
        >>> def rastrigin(p):
        ...     return (p**2 - 10 * torch.cos(2 * torch.pi * p)).sum() + 10 * p.numel()
        >>> sol, res = torchopt_lite.interop.differential_evolution(
        ...     rastrigin, torch.full((2,), 3.0), bounds=[(-5, 5)] * 2, rng=0, vectorized=True)
        >>> [round(float(v), 4) + 0.0 for v in sol]
        [0.0, 0.0]
    """
    optimize = import_scipy_optimize("differential_evolution")
    flat, objective = _setup(fun, params, args, "differential_evolution")
    result = _global.differential_evolution(
        optimize,
        objective,
        objective.batched_value if vectorized else objective.value,
        flat.pack(params),
        bounds=bounds,
        constraints=convert_constraints(constraints, flat),
        polish=polish,
        vectorized=vectorized,
        callback=flat.wrap_callback(callback),
        **kwargs,
    )
    return flat.unpack(result.x), result


def shgo(
    fun: Callable[..., Tensor],
    params: Params,
    *,
    bounds: Any,
    args: Any = (),
    constraints: Any = None,
    minimizer_kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    hessian_backend: HessianBackend = "autograd",
    **kwargs: Any,
) -> tuple[Params, OptimizeResult]:
    r"""Simplicial homology global optimization (:func:`scipy.optimize.shgo`) over a tree.

    Samples the bounded domain, builds a simplicial complex whose minimizer vertices locate
    every basin, and runs one local search per basin (SLSQP by default) with autograd
    derivatives.

    Args:
        fun: ``fun(params, *args) -> Tensor``, a scalar.
        params: a tree of float32/float64 tensors giving the solution's structure (shgo takes
            no starting point).
        bounds: a :class:`scipy.optimize.Bounds` or ``(min, max)`` pairs over the packed vector.
        args: extra positional arguments of ``fun``.
        constraints: constraints as for :func:`~torchopt_lite.interop.minimize`.
        minimizer_kwargs: the local search's keywords, as for :func:`basinhopping`.
        options: scipy's shgo ``options``; ``jac``, ``hess`` and ``hessp`` come from autograd
            and must not be given.
        callback: ``callback(params)`` after each iteration.
        hessian_backend: second derivatives of local methods that use them, as for
            :func:`~torchopt_lite.interop.minimize`.
        **kwargs: passed to :func:`scipy.optimize.shgo` (``n``, ``iters``,
            ``sampling_method``, ``workers``).

    Returns:
        ``(solution, result)``: the global minimum as a tree like ``params``, and scipy's
        result (``result.xl`` holds every local minimum found, packed).

    Example:
        >>> def double_well(p):  # minima near -1 and 1 in each coordinate
        ...     return ((p**2 - 1) ** 2 + 0.3 * p).sum()
        >>> sol, res = torchopt_lite.interop.shgo(double_well, torch.zeros(2), bounds=[(-2, 2)] * 2)
        >>> [round(float(v), 4) for v in sol]
        [-1.0356, -1.0356]
    """
    optimize = import_scipy_optimize("shgo")
    flat, objective = _setup(fun, params, args, "shgo", hessian_backend)
    result = _global.shgo(
        optimize,
        objective,
        bounds=bounds,
        constraints=convert_constraints(constraints, flat),
        minimizer_kwargs=minimizer_kwargs,
        options=options,
        callback=flat.wrap_callback(callback),
        torch_constraints=True,
        **kwargs,
    )
    return flat.unpack(result.x), result


def dual_annealing(
    fun: Callable[..., Tensor],
    params: Params,
    *,
    bounds: Any,
    args: Any = (),
    minimizer_kwargs: dict[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    hessian_backend: HessianBackend = "autograd",
    **kwargs: Any,
) -> tuple[Params, OptimizeResult]:
    r"""Dual annealing (:func:`scipy.optimize.dual_annealing`) with autograd local searches.

    Generalized simulated annealing (visiting distribution with heavy tails, acceptance
    probability from the generalized Metropolis rule) alternated with local searches, which
    use L-BFGS-B within ``bounds`` and the autograd gradient by default.

    Args:
        fun: ``fun(params, *args) -> Tensor``, a scalar.
        params: a tree of float32/float64 tensors: the starting point (scipy's ``x0``; it must
            lie in ``bounds``).
        bounds: a :class:`scipy.optimize.Bounds` or ``(min, max)`` pairs over the packed vector.
        args: extra positional arguments of ``fun``.
        minimizer_kwargs: the local search's keywords, as for :func:`basinhopping`; the default
            is scipy's (L-BFGS-B within ``bounds``, ``maxiter = min(max(6 n, 100), 1000)``).
        callback: ``callback(params, f, context)`` when a new minimum is found.
        hessian_backend: second derivatives of local methods that use them, as for
            :func:`~torchopt_lite.interop.minimize`.
        **kwargs: passed to :func:`scipy.optimize.dual_annealing` (``maxiter``,
            ``initial_temp``, ``rng``, ``no_local_search``, ...).

    Returns:
        ``(solution, result)``: the best point as a tree like ``params``, and scipy's result.

    Example:
        >>> sol, res = torchopt_lite.interop.dual_annealing(
        ...     lambda p: ((p - 0.5) ** 2).sum(), torch.zeros(2), bounds=[(-1, 1)] * 2,
        ...     maxiter=20, rng=0)
        >>> [round(float(v), 4) for v in sol]
        [0.5, 0.5]
    """
    optimize = import_scipy_optimize("dual_annealing")
    flat, objective = _setup(fun, params, args, "dual_annealing", hessian_backend)
    result = _global.dual_annealing(
        optimize,
        objective,
        flat.pack(params),
        bounds=bounds,
        minimizer_kwargs=minimizer_kwargs,
        callback=flat.wrap_callback(callback),
        torch_constraints=True,
        **kwargs,
    )
    return flat.unpack(result.x), result
