"""What each ``scipy.optimize.minimize`` method consumes, and the derivatives we hand it."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from torchopt_lite.interop._objective import ScipyObjective

GRADIENT_FREE = frozenset({"nelder-mead", "powell", "cobyla", "cobyqa"})
GRADIENT_ONLY = frozenset({"cg", "bfgs", "l-bfgs-b", "tnc", "slsqp"})
HESSP = frozenset({"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"})  # hessp accepted
HESS = frozenset({"trust-exact", "dogleg"})  # a full Hessian required
METHODS = GRADIENT_FREE | GRADIENT_ONLY | HESSP | HESS
BOUNDS = frozenset(
    {"nelder-mead", "powell", "l-bfgs-b", "tnc", "slsqp", "trust-constr", "cobyla", "cobyqa"}
)
CONSTRAINTS = frozenset({"slsqp", "trust-constr", "cobyla", "cobyqa"})


def resolve_method(
    method: Any, caller: str, *, bounds: Any = None, constraints: Any = ()
) -> tuple[str, str]:
    """Return ``(name as given, lower-case name)``; ``None`` picks scipy's default."""
    if method is None:
        # scipy's own rule
        method = "SLSQP" if constraints else "L-BFGS-B" if bounds is not None else "BFGS"
    if not isinstance(method, str):
        raise TypeError(
            f"{caller}: method must be the name of a scipy.optimize.minimize method; "
            f"got {type(method).__name__}."
        )
    meth = method.lower()
    if meth not in METHODS:
        raise ValueError(
            f"{caller}: unknown method {method!r}; expected one of "
            f"{', '.join(sorted(METHODS))} (case-insensitive)."
        )
    if bounds is not None and meth not in BOUNDS:
        raise ValueError(
            f"{caller}: method {method!r} does not accept bounds; use one of "
            f"{', '.join(sorted(BOUNDS))}."
        )
    if constraints and meth not in CONSTRAINTS:
        raise ValueError(
            f"{caller}: method {method!r} does not accept constraints; use one of "
            f"{', '.join(sorted(CONSTRAINTS))}."
        )
    return method, meth


def derivative_kwargs(objective: ScipyObjective, meth: str) -> dict[str, Any]:
    """``fun`` and the derivative callables (``jac``, ``hessp``, ``hess``) ``meth`` uses."""
    if meth in GRADIENT_FREE:
        return {"fun": objective.value}
    kwargs: dict[str, Any] = {"fun": objective.value_with_grad, "jac": objective.grad}
    if meth in HESSP:
        kwargs["hessp"] = objective.hessp
    elif meth in HESS:
        kwargs["hess"] = objective.hess
    return kwargs


def import_scipy_optimize(caller: str) -> ModuleType:
    """``scipy.optimize``, or an ``ImportError`` that says how to install it."""
    try:
        import scipy.optimize
    except ImportError as err:
        raise ImportError(
            f"{caller} needs scipy, an optional dependency of torchopt_lite; install it with "
            "`pip install torchopt-lite[scipy]` (or `pip install scipy`)."
        ) from err
    return scipy.optimize
