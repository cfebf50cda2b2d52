"""``solve_bicgstab``: BiCGSTAB for general (non-symmetric) systems."""

from __future__ import annotations

from torchopt_lite import linalg
from torchopt_lite.linalg.info import InfoCallback, OnNonconvergence
from torchopt_lite.linear_solve._common import Preconditioner, krylov_solver
from torchopt_lite.linear_solve.utils import Matvec
from torchopt_lite.typing import LinearSolver, TensorTree


def solve_bicgstab(
    *,
    ridge: float | None = None,
    init: TensorTree | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: Preconditioner = None,
    strict: bool | None = None,
    on_nonconvergence: OnNonconvergence | None = None,
    info: InfoCallback | None = None,
    matvec: Matvec | None = None,
    b: TensorTree | None = None,
) -> LinearSolver:
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
        on_nonconvergence: ``"raise"`` (:class:`~torchopt_lite.linalg.ConvergenceError`),
            ``"warn"`` (:class:`~torchopt_lite.linalg.ConvergenceWarning`, then the last
            iterate) or ``"ignore"``; ``None`` follows ``strict``. Give one of the two.
        info: a callback receiving each eager solve's :class:`~torchopt_lite.linalg.SolveInfo`
            (relative residual, iterations, convergence), e.g. ``infos.append``.
        matvec: a system's ``matvec(x) = A x`` to bind (TorchOpt's form): the returned solver
            then uses it when called without one.
        b: a right-hand side to bind in the same way.

    Returns:
        A linear solver ``solve(matvec, b) -> x``.

    Example:
        >>> A = torch.tensor([[3.0, 1.0], [-1.0, 2.0]])
        >>> solve_bicgstab()(lambda x: A @ x, torch.tensor([4.0, 1.0]))
        tensor([1.0000, 1.0000])

    Note:
        Not in TorchOpt.
    """
    options = dict(
        ridge=ridge,
        init=init,
        rtol=rtol,
        atol=atol,
        maxiter=maxiter,
        M=M,
        strict=strict,
        on_nonconvergence=on_nonconvergence,
        info=info,
    )
    return krylov_solver("solve_bicgstab", solve_bicgstab, linalg.bicgstab, options, matvec, b)
