"""A ``closure()`` over parameters, torch.optim's convention, as scipy's callables of one vector.

Shared by :class:`~torchopt_lite.interop.ScipyMinimizer` and
:class:`~torchopt_lite.interop.ScipyGlobalMinimizer` (both :class:`ClosureOptimizer`\\ s): each
evaluation writes the point into the parameters, calls the closure (which zeroes the grads,
computes the loss, calls ``loss.backward()`` and returns the loss) and reads the loss and the
packed ``.grad``\\ s.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from torchopt_lite.interop._flat import FlatParams
from torchopt_lite.interop._methods import HESS, HESSP, import_scipy_optimize
from torchopt_lite.interop._objective import ScipyObjective, check_scalar

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

NO_SECOND_DERIVATIVES = (
    "{caller}: method {method!r} needs second derivatives, which a closure that calls "
    "loss.backward() cannot give; use the functional torchopt_lite.interop API (minimize, "
    "basinhopping, ...) with torch.func.functional_call, or a gradient method such as "
    "'L-BFGS-B'."
)
NO_BACKWARD = (
    "{caller}: no parameter has a .grad after closure(); the closure must call "
    "loss.backward() (or pick a gradient-free method such as 'Nelder-Mead')."
)
NO_CLOSURE = (
    "{caller}: a closure is required: it must zero the grads, compute the loss, call "
    "loss.backward() and return the loss."
)


def check_first_order(method: str, meth: str, caller: str) -> None:
    """Refuse a scipy method that needs second derivatives (a closure has first ones only)."""
    if meth in HESSP | HESS:
        raise ValueError(NO_SECOND_DERIVATIVES.format(caller=caller, method=method))


class ClosureObjective(ScipyObjective):
    """Loss and gradient at a point by writing it into ``params`` and calling ``closure()``.

    A parameter whose ``.grad`` is ``None`` after the closure counts as a zero gradient.
    """

    def __init__(
        self,
        params: list[Tensor],
        closure: Callable[[], Any] | None,
        flat: FlatParams,
        method: str = "",
    ) -> None:
        if closure is None:
            raise TypeError(NO_CLOSURE.format(caller=flat.caller))
        super().__init__(flat, method)
        self.params = params
        self.closure = closure

    def write(self, x: np.ndarray) -> None:
        """Copy the point ``x`` into the parameters."""
        with torch.no_grad():
            for p, value in zip(self.params, self.flat.unpack(x), strict=True):
                p.copy_(value)

    def _loss(self, x: np.ndarray) -> Tensor:
        self.write(x)
        with torch.enable_grad():
            return check_scalar(self.closure(), self.flat.caller, "closure")

    def value(self, x: np.ndarray) -> float:
        """The closure's loss at ``x``."""
        return float(self._loss(x).detach())

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The closure's loss at ``x`` and the packed ``.grad`` it leaves."""
        loss = self._loss(x)
        grads = [p.grad for p in self.params]
        if all(g is None for g in grads):
            raise ValueError(NO_BACKWARD.format(caller=self.flat.caller))
        flat_grad = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1).to("cpu", torch.float64)
                for p, g in zip(self.params, grads, strict=True)
            ]
        )
        return float(loss.detach()), flat_grad.numpy()

    def hessp(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Not available: see :func:`check_first_order`, which the optimizers call first."""
        raise ValueError(NO_SECOND_DERIVATIVES.format(caller=self.flat.caller, method=self.method))

    def hess(self, x: np.ndarray) -> np.ndarray:
        """Not available: see :func:`check_first_order`, which the optimizers call first."""
        raise ValueError(NO_SECOND_DERIVATIVES.format(caller=self.flat.caller, method=self.method))

    def run_in_place(self, run: Callable[[np.ndarray], OptimizeResult]) -> OptimizeResult:
        """``run(x0)`` from the parameters' values; leave the solution in them.

        If the run raises, the parameters get their starting values back.
        """
        x0 = self.flat.pack(self.params)
        try:
            result = run(x0)
        except BaseException:
            self.write(x0)
            raise
        self.write(result.x)
        return result


class ClosureOptimizer(torch.optim.Optimizer, abc.ABC):
    """One parameter group; a step is one complete scipy run on a closure, written back."""

    result: OptimizeResult | None

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
        callback: Callable[..., Any] | None,
        caller: str,
    ) -> None:
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(
                f"{caller} doesn't support per-parameter options (parameter groups); "
                f"got {len(self.param_groups)} groups."
            )
        flat = FlatParams(self.param_groups[0]["params"], caller)  # dtype and device checks
        flat.wrap_callback(callback)  # checks that it is callable
        self.num_entries = flat.size
        self._callback = callback
        self.result = None

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run scipy from the current parameters and leave the solution in them.

        Args:
            closure: zeroes the grads, computes the loss, calls ``backward()`` and returns the
                loss (a scalar tensor); required.

        Returns:
            The loss at the solution, a 0-d float64 tensor.
        """
        caller = f"{type(self).__name__}.step"
        optimize = import_scipy_optimize(caller)
        params: list[Tensor] = list(self.param_groups[0]["params"])
        method = self.param_groups[0]["method"]
        objective = ClosureObjective(params, closure, FlatParams(params, caller), method)
        callback = objective.flat.wrap_callback(self._callback)
        self.result = objective.run_in_place(
            lambda x0: self._run(optimize, objective, x0, callback)
        )
        return torch.tensor(float(self.result.fun), dtype=torch.float64)

    @abc.abstractmethod
    def _run(
        self,
        optimize: ModuleType,
        objective: ClosureObjective,
        x0: np.ndarray,
        callback: Callable[..., Any] | None,
    ) -> OptimizeResult:
        """The scipy run from ``x0`` (nothing is written before it starts)."""
