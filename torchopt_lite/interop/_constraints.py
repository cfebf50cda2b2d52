"""scipy constraints written in torch: functions of the params tree, Jacobians from autograd."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from torchopt_lite.interop._flat import FlatParams

JAC_GIVEN = (
    "{caller}: constraint {index} gives its own 'jac'; constraint functions here take the params "
    "tree and their Jacobian comes from autograd, so leave 'jac' out (or pass a scipy "
    "LinearConstraint for constraints on the flat vector)."
)


class TorchConstraint:
    """``c(params, *args)`` returning a tensor, as numpy callables of the flat vector."""

    def __init__(
        self, fun: Callable[..., Any], flat: FlatParams, args: tuple[Any, ...], name: str
    ) -> None:
        self.fun = fun
        self.flat = flat
        self.args = args
        self.name = name

    def flat_fun(self, x: Tensor) -> Tensor:
        """The constraint values as a 1-d tensor."""
        out = self.fun(self.flat.unravel(x), *self.args)
        if not isinstance(out, Tensor) or not out.is_floating_point():
            got = out.dtype if isinstance(out, Tensor) else type(out).__name__
            raise TypeError(
                f"{self.flat.caller}: {self.name} must return a real floating-point "
                f"torch.Tensor; got {got}."
            )
        return out.reshape(-1)

    def value(self, x: np.ndarray) -> np.ndarray:
        """Constraint values at ``x``, shape ``(m,)``."""
        with torch.no_grad():
            out = self.flat_fun(self.flat.to_tensor(x))
        return out.to("cpu", torch.float64).numpy()

    def jac(self, x: np.ndarray) -> np.ndarray:
        """The Jacobian at ``x``, shape ``(m, n)``, one backward pass per constraint."""
        with torch.enable_grad():
            jac = torch.autograd.functional.jacobian(self.flat_fun, self.flat.to_tensor(x))
        return jac.detach().to("cpu", torch.float64).numpy()


def convert_constraints(constraints: Any, flat: FlatParams) -> Any:
    """Turn torch constraint dicts and ``NonlinearConstraint``s into scipy-ready ones.

    ``LinearConstraint`` acts on the flat vector and passes through unchanged.
    """
    from scipy.optimize import LinearConstraint, NonlinearConstraint

    caller = flat.caller
    if constraints is None:
        return ()
    if isinstance(constraints, dict | NonlinearConstraint | LinearConstraint):
        constraints = [constraints]
    if not isinstance(constraints, list | tuple):
        raise TypeError(
            f"{caller}: constraints must be a dict, a NonlinearConstraint, a LinearConstraint "
            f"or a sequence of them; got {type(constraints).__name__}."
        )
    out: list[Any] = []
    for i, con in enumerate(constraints):
        name = f"constraints[{i}]['fun']"
        if isinstance(con, LinearConstraint):
            out.append(con)
        elif isinstance(con, NonlinearConstraint):
            if callable(con.jac):
                raise ValueError(JAC_GIVEN.format(caller=caller, index=i))
            tc = TorchConstraint(con.fun, flat, (), f"constraints[{i}].fun")
            out.append(
                NonlinearConstraint(
                    tc.value,
                    con.lb,
                    con.ub,
                    jac=tc.jac,
                    hess=con.hess,
                    keep_feasible=con.keep_feasible,
                )
            )
        elif isinstance(con, dict):
            if con.get("type") not in ("eq", "ineq"):
                raise ValueError(
                    f"{caller}: constraints[{i}]['type'] must be 'eq' or 'ineq'; "
                    f"got {con.get('type')!r}."
                )
            if not callable(con.get("fun")):
                raise TypeError(
                    f"{caller}: {name} must be a callable c(params, *args) -> Tensor; "
                    f"got {type(con.get('fun')).__name__}."
                )
            if con.get("jac") is not None:
                raise ValueError(JAC_GIVEN.format(caller=caller, index=i))
            tc = TorchConstraint(con["fun"], flat, tuple(con.get("args", ())), name)
            out.append({"type": con["type"], "fun": tc.value, "jac": tc.jac})
        else:
            raise TypeError(
                f"{caller}: constraints[{i}] must be a dict, a NonlinearConstraint or a "
                f"LinearConstraint; got {type(con).__name__}."
            )
    return out
