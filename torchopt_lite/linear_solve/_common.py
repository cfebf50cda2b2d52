from __future__ import annotations

from torchopt_lite.linalg._krylov import check_tolerances


def check_ridge(name: str, ridge: float | None) -> None:
    if ridge is not None and not ridge >= 0.0:
        raise ValueError(f"{name}: ridge must be >= 0 or None; got {ridge}.")


def check_krylov(
    name: str, ridge: float | None, rtol: float, atol: float, maxiter: int | None
) -> None:
    check_ridge(name, ridge)
    check_tolerances(name, rtol, atol, maxiter)
