"""``scipy.optimize.minimize`` over a pytree of tensors, with autograd derivatives."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optree
import torch
from torch import Tensor

from torchopt_lite.interop._constraints import convert_constraints
from torchopt_lite.interop._flat import FlatParams
from torchopt_lite.interop._methods import (
    derivative_kwargs,
    import_scipy_optimize,
    resolve_method,
)
from torchopt_lite.interop._objective import HessianBackend, Objective
from torchopt_lite.typing import LinearSolver, Params

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult


def minimize(
    fun: Callable[..., Tensor],
    params: Params,
    *,
    args: Any = (),
    method: str | None = None,
    bounds: Any = None,
    constraints: Any = (),
    tol: float | None = None,
    options: dict[str, Any] | None = None,
    callback: Callable[..., Any] | None = None,
    implicit_solve: LinearSolver | None = None,
    hessian_backend: HessianBackend = "autograd",
) -> tuple[Params, OptimizeResult]:
    r"""Minimize ``fun(params, *args)`` with :func:`scipy.optimize.minimize` and torch derivatives.

    The tree ``params`` is packed into one float64 vector :math:`x \in \mathbb{R}^n` (leaves in
    ``optree.tree_leaves`` order, each row-major); scipy then solves

    .. math::
        x^\star = \operatorname*{arg\,min}_x f(x, \theta), \qquad f(x, \theta) =
        \mathtt{fun}(\mathrm{unpack}(x), \theta),

    with :math:`\nabla_x f` from reverse-mode autograd, Hessian-vector products
    :math:`\nabla^2_{xx} f\, p` for Newton-CG, trust-ncg, trust-krylov and trust-constr, and the
    full Hessian for trust-exact and dogleg, both from ``hessian_backend``. Nelder-Mead, Powell,
    COBYLA and COBYQA only evaluate ``fun`` (under ``torch.no_grad``).

    **Differentiable solutions.** When a tensor in ``args`` requires grad, the solution is
    differentiable with respect to it by implicit differentiation of the stationarity
    condition :math:`\nabla_x f(x^\star(\theta), \theta) = 0`
    (:func:`torchopt_lite.diff.implicit.custom_root`):

    .. math::
        \frac{\partial x^\star}{\partial \theta} =
        -\big[\nabla^2_{xx} f(x^\star, \theta)\big]^{-1} \nabla^2_{x\theta} f(x^\star, \theta).

    The condition holds at an unconstrained minimum only, so bounds and constraints are refused
    on this path, and scipy must have converged (``result.success``), or a ``ValueError`` says so.

    Args:
        fun: ``fun(params, *args) -> Tensor``, a scalar built from torch operations.
        params: a tree of float32/float64 tensors, all on one device; the starting point.
            It is not modified.
        args: extra positional arguments of ``fun`` (a tuple; a single non-tuple value is
            wrapped, as scipy does). Tensors in it that require grad make the solution
            differentiable (see above); tensors captured by ``fun``'s closure do not.
        method: a :func:`scipy.optimize.minimize` method name (case-insensitive); ``None``
            chooses like scipy: SLSQP with constraints, L-BFGS-B with bounds, BFGS otherwise.
        bounds: a :class:`scipy.optimize.Bounds` or a sequence of ``(min, max)`` pairs over the
            packed vector, passed to scipy as is.
        constraints: a dict ``{"type": "eq" | "ineq", "fun": c, "args": ()}`` with
            ``c(params, *args) -> Tensor``, a :class:`scipy.optimize.NonlinearConstraint` whose
            ``fun`` takes the params tree (its ``jac`` comes from autograd), a
            :class:`scipy.optimize.LinearConstraint` over the packed vector, or a list of them.
        tol: scipy's ``tol``.
        options: scipy's ``options`` for the method (``maxiter``, ``gtol``, ...).
        callback: called once per iteration as ``callback(params, *rest)`` with the current
            iterate as a tree; ``rest`` is what scipy passes after the point (trust-constr's
            state). Raise ``StopIteration`` to stop.
        implicit_solve: the linear solver ``solve(matvec, b)`` of the implicit derivative
            (:mod:`torchopt_lite.linear_solve`); ``None`` is conjugate gradients (the Hessian at
            a strict minimum is symmetric positive definite) to ``rtol=1e-10`` when every leaf
            of ``params`` is float64, ``1e-5`` otherwise.
        hessian_backend: how second derivatives are computed. ``'autograd'``: double
            backward, :math:`\nabla^2 f\,p = \nabla_x (\nabla_x f \cdot p)` (the gradient's
            graph is kept for the current point, so the repeated products of a method's inner
            loop cost one backward pass each; a Hessian takes one per coordinate); ``fun``'s
            backward must be differentiable. ``'func'``: forward-over-reverse
            ``torch.func.jvp(torch.func.grad(f))`` and ``torch.func.hessian``; ``fun`` must
            support ``torch.func`` transforms and forward-mode AD. ``'autograd'`` is 2.4-5x
            faster per product at a new point, 5-12x at the same point, and skips 0.8-2 s of
            set-up on the first call (``python -m benchmarks interop``);
            ``torch.func.hessian`` is faster for full Hessians from about 100 coordinates.

    Returns:
        ``(solution, result)``: the solution as a tree of new tensors with the dtypes and device
        of ``params``, and scipy's :class:`~scipy.optimize.OptimizeResult` (``result.x`` is the
        packed float64 vector).

    Raises:
        ValueError: unknown method or ``hessian_backend``; bounds or constraints the method does
            not take; a non-scalar objective; a value without autograd graph, or one that does
            not depend on ``params`` (for methods using gradients); a method needing second
            derivatives when ``hessian_backend`` cannot differentiate ``fun`` twice.
        TypeError: non-tensor leaves, or params that are not float32/float64 (float16 and
            bfloat16 are refused: scipy works in float64 and the solution would be rounded).

    Example:
        >>> def rosen(p):
        ...     x, y = p["x"], p["y"]
        ...     return (1 - x) ** 2 + 100 * (y - x**2) ** 2
        >>> params = {"x": torch.tensor(-1.0, dtype=torch.float64), "y": torch.tensor(2.0)}
        >>> sol, res = torchopt_lite.interop.minimize(rosen, params, method="Newton-CG")
        >>> bool(res.success), round(float(sol["x"]), 5), sol["y"].dtype
        (True, 1.0, torch.float32)

    Note:
        Params on an accelerator are supported: ``fun`` and its derivatives run on the params'
        device, and each evaluation copies the float64 vector there and the results back to the
        host (scipy runs on the host), one synchronisation per call. Params on the ``meta``
        device are refused. TorchOpt has no scipy bridge.
    """
    caller = "minimize"
    optimize = import_scipy_optimize(caller)
    flat = FlatParams(params, caller)
    if not isinstance(args, tuple):
        args = (args,)
    method, meth = resolve_method(method, caller, bounds=bounds, constraints=constraints)
    objective = Objective(fun, flat, args, method=method, hessian_backend=hessian_backend)
    cons = convert_constraints(constraints, flat)
    kwargs = derivative_kwargs(objective, meth)
    scipy_callback = flat.wrap_callback(callback)

    def run(x0: Any) -> OptimizeResult:
        return optimize.minimize(
            x0=x0,
            method=method,
            bounds=bounds,
            constraints=cons,
            tol=tol,
            options=options,
            callback=scipy_callback,
            **kwargs,
        )

    if not (torch.is_grad_enabled() and _requires_grad(args)):
        result = run(flat.pack(params))
        return flat.unpack(result.x), result
    if bounds is not None or cons:
        raise ValueError(
            f"{caller}: a tensor in args requires grad, so the solution would be differentiated "
            "through the stationarity condition grad f(x) = 0, which does not hold at a bounded "
            "or constrained optimum; drop bounds and constraints or detach the args."
        )
    return _implicit_minimize(objective, run, params, implicit_solve)


def _requires_grad(tree: Any) -> bool:
    leaves: list[Any] = optree.tree_leaves(tree)
    return any(isinstance(leaf, Tensor) and leaf.requires_grad for leaf in leaves)


def _implicit_minimize(
    objective: Objective,
    run: Callable[[Any], OptimizeResult],
    params: Params,
    implicit_solve: LinearSolver | None,
) -> tuple[Params, OptimizeResult]:
    from torchopt_lite.diff.implicit import custom_root
    from torchopt_lite.linear_solve import solve_cg

    flat, args = objective.flat, objective.args
    argnums = tuple(i + 1 for i, arg in enumerate(args) if _requires_grad(arg))
    results: list[OptimizeResult] = []

    def optimality(x: Tensor, *theta: Any) -> Tensor:
        def f(x_: Tensor) -> Tensor:
            return objective.fun_with_args(x_, theta)

        return torch.func.grad(f)(x)

    def solver(x0: Tensor, *theta: Any) -> Tensor:
        result = run(x0.detach().to("cpu").numpy())
        if not result.success:
            raise ValueError(
                f"{flat.caller}: scipy did not converge ({result.message}), so the implicit "
                "derivative of the solution would be wrong; raise options['maxiter'] or loosen "
                "tol, or detach the args."
            )
        results.append(result)
        return flat.to_tensor(result.x)

    if implicit_solve is None:
        # the Hessian at a strict minimum is symmetric positive definite: plain CG, to a
        # tolerance the dtype of the Hessian-vector products can reach
        rtol = 1e-10 if all(dt == torch.float64 for dt in flat.dtypes) else 1e-5
        implicit_solve = solve_cg(rtol=rtol)
    solve = custom_root(optimality, argnums=argnums, solve=implicit_solve)(solver)
    x0 = flat.to_tensor(flat.pack(params))
    x_star = solve(x0, *args)
    return flat.unravel(x_star), results[-1]
