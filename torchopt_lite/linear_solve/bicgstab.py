"""``solve_bicgstab``: BiCGSTAB for general (non-symmetric) systems."""

from __future__ import annotations

from torchopt_lite import linalg
from torchopt_lite.linear_solve._common import (
    Preconditioner,
    check_krylov,
    krylov_factory,
    solve_now_or_later,
)
from torchopt_lite.linear_solve.utils import Matvec, make_ridge_matvec
from torchopt_lite.typing import LinearSolver, TensorTree


@krylov_factory
def solve_bicgstab(
    *,
    ridge: float | None = None,
    init: TensorTree | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Preconditioner = None,
    strict: bool | None = None,
    matvec: Matvec | None = None,
    b: TensorTree | None = None,
) -> LinearSolver | TensorTree:
    r"""Return ``solve(matvec, b)`` solving :math:`(A + \mathrm{ridge}\,I)\,x = b` by BiCGSTAB.

    For non-symmetric :math:`A` (fixed points :math:`x = T(x, \theta)`, optimality conditions
    that are not gradients) without squaring the condition number as normal CG does. Two
    matvecs per step; see :func:`torchopt_lite.linalg.bicgstab`.

    Args:
        ridge: optional :math:`\mathrm{ridge} \ge 0` added to the diagonal.
        init: initial guess shaped like ``b`` (zeros if ``None``).
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        maxiter: maximum number of steps (``None``: ``10 * b.numel()``).
        M: right preconditioner approximating :math:`(A + \mathrm{ridge}\,I)^{-1}`.
        strict: non-convergence policy (``None``: raise unless ``maxiter`` is given).
        matvec: with ``b``, solve the system now and return ``x`` (``matvec(x) = A x``), as
            ``solve_bicgstab(matvec=..., b=...)`` is called in JAXopt-style code.
        b: the right-hand side, a tree shaped like ``x``; only together with ``matvec``.

    Returns:
        A linear solver ``solve(matvec, b) -> x``; or ``x`` itself when ``matvec`` and ``b`` are
        given.

    Example:
        >>> A = torch.tensor([[3.0, 1.0], [-1.0, 2.0]])
        >>> solve_bicgstab()(lambda x: A @ x, torch.tensor([4.0, 1.0]))
        tensor([1.0000, 1.0000])

    Note:
        Not in TorchOpt.
    """
    check_krylov("solve_bicgstab", ridge, rtol, atol, maxiter)

    def solve(matvec: Matvec, b: TensorTree) -> TensorTree:
        if ridge is not None:
            matvec = make_ridge_matvec(matvec, ridge=ridge)
        return linalg.bicgstab(
            matvec, b, init, rtol=rtol, atol=atol, maxiter=maxiter, M=M, strict=strict
        )

    return solve_now_or_later("solve_bicgstab", solve, matvec, b)
