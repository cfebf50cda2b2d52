"""``ScipyMinimizer``: a ``torch.optim.Optimizer`` whose ``step(closure)`` runs scipy.optimize."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from torchopt_lite.interop._flat import FlatParams
from torchopt_lite.interop._methods import (
    GRADIENT_FREE,
    HESS,
    HESSP,
    import_scipy_optimize,
    resolve_method,
)
from torchopt_lite.interop._objective import check_scalar

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult


class ScipyMinimizer(torch.optim.Optimizer):
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
        scipy to convergence (or ``options["maxiter"]``) and keeps no state between steps.
    """

    result: OptimizeResult | None

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
        if meth in HESSP | HESS:
            raise ValueError(
                f"{caller}: method {method!r} needs second derivatives, which a closure that "
                "calls loss.backward() cannot give; use torchopt_lite.interop.minimize with "
                "torch.func.functional_call, or a gradient method such as 'L-BFGS-B'."
            )
        defaults = {
            "method": method,
            "bounds": bounds,
            "constraints": constraints,
            "tol": tol,
            "options": options,
        }
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                f"{caller} doesn't support per-parameter options (parameter groups); "
                f"got {len(self.param_groups)} groups."
            )
        FlatParams(self.param_groups[0]["params"], caller)  # dtype and device checks
        self._gradient_free = meth in GRADIENT_FREE
        self._callback = callback
        self.result = None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run scipy from the current parameters and leave the solution in them.

        Args:
            closure: recomputes the loss, calls ``backward()`` and returns the loss (a scalar
                tensor); required.

        Returns:
            The final loss as a 0-d float64 tensor.
        """
        caller = "ScipyMinimizer.step"
        optimize = import_scipy_optimize(caller)
        if closure is None:
            raise TypeError(
                f"{caller}: a closure is required: it must zero the grads, compute the loss, "
                "call loss.backward() and return the loss."
            )
        group = self.param_groups[0]
        params: list[Tensor] = list(group["params"])
        flat = FlatParams(params, caller)

        def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
            with torch.no_grad():
                for p, value in zip(params, flat.unpack(x), strict=True):
                    p.copy_(value)
            with torch.enable_grad():
                loss = check_scalar(closure(), caller, "closure")
            if self._gradient_free:
                return float(loss.detach()), np.zeros(0)
            grads = [p.grad for p in params]
            if all(g is None for g in grads):
                raise ValueError(
                    f"{caller}: no parameter has a .grad after closure(); the closure must call "
                    "loss.backward() (or pick a gradient-free method such as 'Nelder-Mead')."
                )
            flat_grad = torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g).reshape(-1).to("cpu", torch.float64)
                    for p, g in zip(params, grads, strict=True)
                ]
            )
            return float(loss.detach()), flat_grad.numpy()

        def loss_only(x: np.ndarray) -> float:
            return evaluate(x)[0]

        result = optimize.minimize(
            loss_only if self._gradient_free else evaluate,
            flat.pack(params),
            jac=not self._gradient_free,
            method=group["method"],
            bounds=group["bounds"],
            constraints=group["constraints"],
            tol=group["tol"],
            options=group["options"],
            callback=flat.wrap_callback(self._callback),
        )
        with torch.no_grad():
            for p, value in zip(params, flat.unpack(result.x), strict=True):
                p.copy_(value)
        self.result = result
        return torch.tensor(float(result.fun), dtype=torch.float64)
