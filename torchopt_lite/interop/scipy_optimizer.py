"""``ScipyMinimizer``: a ``torch.optim.Optimizer`` whose ``step(closure)`` runs scipy.optimize."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from torchopt_lite.interop._closure import ClosureObjective, ClosureOptimizer, check_first_order
from torchopt_lite.interop._methods import GRADIENT_FREE, import_scipy_optimize, resolve_method

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult


class ScipyMinimizer(ClosureOptimizer):
    r"""Minimize a closure's loss over ``params`` with :func:`scipy.optimize.minimize`.

    The parameters are packed into one float64 vector :math:`x`; each evaluation writes
    :math:`x` into them, calls ``closure()`` (which computes the loss and calls
    ``loss.backward()``, as for :class:`torch.optim.LBFGS`) and hands scipy the loss and the
    packed ``.grad``\ s (``None`` counts as zero). One :meth:`step` is one complete scipy run
    from the current values; afterwards the parameters hold the solution and
    :attr:`result` scipy's :class:`~scipy.optimize.OptimizeResult`.

    Args:
        params: an iterable of float32/float64 tensors (one parameter group), all on one device.
        method: a gradient-based or gradient-free :func:`scipy.optimize.minimize` method.
            Methods that need second derivatives (Newton-CG, trust-ncg, trust-krylov,
            trust-exact, trust-constr, dogleg) are refused: a closure cannot be differentiated
            twice; use :func:`~torchopt_lite.interop.minimize` with
            :func:`torch.func.functional_call` for them.
        bounds: scipy's bounds over the packed vector (parameters in order, each row-major).
        constraints: scipy constraints over the packed numpy vector, passed as they are.
        tol: scipy's ``tol``.
        options: scipy's ``options`` (``maxiter``, ...).
        callback: ``callback(params)`` once per iteration, with the iterate as a list of
            tensors shaped like ``params`` (new tensors; the parameters themselves hold the
            last evaluated point).

    Example:
        >>> model = torch.nn.Linear(3, 1).double()
        >>> x, y = torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
        >>> opt = torchopt_lite.interop.ScipyMinimizer(model.parameters(), method="L-BFGS-B")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((model(x) - y) ** 2).mean()
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)
        >>> bool(opt.result.success), opt.result.nit > 0
        (True, True)

    Note:
        ``torch.optim.LBFGS`` runs a fixed number of iterations per ``step``; this class runs
        scipy to convergence (or ``options["maxiter"]``) and keeps no state between steps. If
        the run raises (a bad closure, a ``KeyboardInterrupt``), the parameters get their
        starting values back.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        method: str = "L-BFGS-B",
        *,
        bounds: Any = None,
        constraints: Any = (),
        tol: float | None = None,
        options: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        caller = "ScipyMinimizer"
        import_scipy_optimize(caller)
        method, meth = resolve_method(method, caller, bounds=bounds, constraints=constraints)
        check_first_order(method, meth, caller)
        defaults = {
            "method": method,
            "bounds": bounds,
            "constraints": constraints,
            "tol": tol,
            "options": options,
        }
        super().__init__(params, defaults, callback, caller)
        self._gradient_free = meth in GRADIENT_FREE

    def _run(
        self,
        optimize: ModuleType,
        objective: ClosureObjective,
        x0: np.ndarray,
        callback: Callable[..., Any] | None,
    ) -> OptimizeResult:
        group = self.param_groups[0]
        return optimize.minimize(
            objective.value if self._gradient_free else objective.value_with_grad,
            x0,
            jac=None if self._gradient_free else objective.grad,
            method=group["method"],
            bounds=group["bounds"],
            constraints=group["constraints"],
            tol=group["tol"],
            options=group["options"],
            callback=callback,
        )
