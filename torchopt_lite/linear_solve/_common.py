from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast, overload

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


Preconditioner = TensorTree | Callable[[TensorTree], TensorTree] | None


class KrylovFactory(Protocol):
    """A Krylov solver factory: a solver without the system, the solution with it."""

    @overload
    def __call__(
        self,
        *,
        ridge: float | None = None,
        init: TensorTree | None = None,
        rtol: float = 1e-5,
        atol: float = 0.0,
        maxiter: int | None = None,
        M: Preconditioner = None,
        strict: bool | None = None,
        matvec: None = None,
        b: None = None,
    ) -> LinearSolver: ...
    @overload
    def __call__(
        self,
        *,
        ridge: float | None = None,
        init: TensorTree | None = None,
        rtol: float = 1e-5,
        atol: float = 0.0,
        maxiter: int | None = None,
        M: Preconditioner = None,
        strict: bool | None = None,
        matvec: Matvec,
        b: TensorTree,
    ) -> TensorTree: ...


class InvFactory(Protocol):
    """:func:`~torchopt_lite.linear_solve.solve_inv`'s two call forms."""

    @overload
    def __call__(
        self,
        *,
        ridge: float | None = None,
        ns: bool = False,
        maxiter: int | None = None,
        alpha: float | None = None,
        matvec: None = None,
        b: None = None,
    ) -> LinearSolver: ...
    @overload
    def __call__(
        self,
        *,
        ridge: float | None = None,
        ns: bool = False,
        maxiter: int | None = None,
        alpha: float | None = None,
        matvec: Matvec,
        b: TensorTree,
    ) -> TensorTree: ...


def krylov_factory(fn: Callable[..., Any]) -> KrylovFactory:
    """Type ``fn`` by its two call forms (the function itself is unchanged)."""
    return cast(KrylovFactory, fn)


def inv_factory(fn: Callable[..., Any]) -> InvFactory:
    """Type ``fn`` by its two call forms (the function itself is unchanged)."""
    return cast(InvFactory, fn)
