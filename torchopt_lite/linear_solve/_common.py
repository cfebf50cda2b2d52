from __future__ import annotations

from torchopt_lite.linalg._krylov import check_tolerances
from torchopt_lite.linear_solve.utils import Matvec
from torchopt_lite.typing import LinearSolver, TensorTree


def check_ridge(name: str, ridge: float | None) -> None:
    if ridge is not None and not ridge >= 0.0:
        raise ValueError(f"{name}: ridge must be >= 0 or None; got {ridge}.")


def check_krylov(
    name: str, ridge: float | None, rtol: float, atol: float, maxiter: int | None
) -> None:
    check_ridge(name, ridge)
    check_tolerances(name, rtol, atol, maxiter)


def solve_now_or_later(
    name: str, solve: LinearSolver, matvec: Matvec | None, b: TensorTree | None
) -> LinearSolver | TensorTree:
    """The solver, or its solution of ``matvec(x) = b`` when the system is given (JAXopt style)."""
    if matvec is None and b is None:
        return solve
    if matvec is None or b is None:
        given, missing = ("matvec", "b") if b is None else ("b", "matvec")
        raise TypeError(
            f"{name}: got {given} but not {missing}; pass both to solve the system now, or "
            "neither to get a solver solve(matvec, b)."
        )
    return solve(matvec, b)
