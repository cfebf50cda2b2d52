from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchopt_lite.linalg._krylov import check_tolerances, resolve_policy
from torchopt_lite.linalg.info import OnNonconvergence
from torchopt_lite.linear_solve.utils import Matvec, make_ridge_matvec
from torchopt_lite.typing import LinearSolver, TensorTree

Preconditioner = TensorTree | Callable[[TensorTree], TensorTree] | None


def check_ridge(name: str, ridge: float | None) -> None:
    if ridge is not None and not ridge >= 0.0:
        raise ValueError(f"{name}: ridge must be >= 0 or None; got {ridge}.")


def check_krylov(
    name: str,
    ridge: float | None,
    rtol: float,
    atol: float,
    maxiter: int | None,
    strict: bool | None = None,
    on_nonconvergence: OnNonconvergence | None = None,
) -> OnNonconvergence:
    """Validate a Krylov factory's options; return its non-convergence policy."""
    check_ridge(name, ridge)
    check_tolerances(name, rtol, atol, maxiter)
    return resolve_policy(name, strict, on_nonconvergence, maxiter)


def krylov_solver(
    name: str,
    factory: Callable[..., LinearSolver],
    method: Callable[..., TensorTree],
    options: dict[str, Any],
    matvec: Matvec | None,
    b: TensorTree | None,
) -> LinearSolver:
    """The solver of a Krylov factory (``solve_cg``, ``solve_bicgstab``): ``options`` checked,
    an optional ridge added to ``matvec``, then ``method`` (``linalg.cg``, ...) with them."""
    o = options
    policy = check_krylov(
        name, o["ridge"], o["rtol"], o["atol"], o["maxiter"], o["strict"], o["on_nonconvergence"]
    )

    def solve(matvec: Matvec, b: TensorTree) -> TensorTree:
        if o["ridge"] is not None:
            matvec = make_ridge_matvec(matvec, ridge=o["ridge"])
        return method(
            matvec,
            b,
            o["init"],
            rtol=o["rtol"],
            atol=o["atol"],
            maxiter=o["maxiter"],
            M=o["M"],
            on_nonconvergence=policy,
            info=o["info"],
        )

    return bind_system(name, factory, options, solve, matvec, b)


def bind_system(
    name: str,
    factory: Callable[..., LinearSolver],
    options: dict[str, Any],
    solve: LinearSolver,
    matvec: Matvec | None,
    b: TensorTree | None,
) -> LinearSolver:
    """``solve``, called as TorchOpt's ``functools.partial`` solvers are.

    ``solve_inv(matvec=mv, b=b)`` returns a solver of that system: called with no arguments it
    solves it, called with others it solves those; keyword options given at the call
    (``solve_cg()(mv, b, ridge=1.0)``) override the factory's, and are checked by it.
    """
    bound_matvec, bound_b = matvec, b

    def solve_bound(
        matvec: Matvec | None = None, b: TensorTree | None = None, **overrides: Any
    ) -> TensorTree:
        matvec = bound_matvec if matvec is None else matvec
        b = bound_b if b is None else b
        if matvec is None or b is None:
            missing = "matvec" if matvec is None else "b"
            raise TypeError(
                f"{name}: the solver has no {missing}; pass it to the solver or to {name}()."
            )
        if overrides:
            return factory(**{**options, **overrides})(matvec, b)
        return solve(matvec, b)

    return solve_bound
