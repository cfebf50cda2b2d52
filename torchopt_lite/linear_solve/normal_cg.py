"""``solve_normal_cg``: conjugate gradient on the normal equations, for any square system."""

from __future__ import annotations

from torchopt_lite.linalg.cg import run_cg
from torchopt_lite.linalg.info import InfoCallback, OnNonconvergence
from torchopt_lite.linear_solve._common import (
    Preconditioner,
    bind_system,
    check_krylov,
)
from torchopt_lite.linear_solve.utils import (
    Matvec,
    make_normal_matvec,
    make_ridge_matvec,
    make_rmatvec,
)
from torchopt_lite.typing import LinearSolver, TensorTree


def solve_normal_cg(
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
    r"""Return ``solve(matvec, b)`` solving :math:`(A^\top A + \mathrm{ridge}\,I)\,x = A^\top b`.

    For an invertible :math:`A` and no ridge this is the solution of :math:`A x = b`, whether or
    not :math:`A` is symmetric; the price is a squared condition number. :math:`A^\top` is the
    VJP of ``matvec``, whose graph is built once per solve, so each CG step costs one ``matvec``
    and one backward pass over that graph. The tolerances, and the residual of its
    :class:`~torchopt_lite.linalg.SolveInfo`, apply to the normal equations.

    Args:
        ridge: optional :math:`\mathrm{ridge} \ge 0` added to :math:`A^\top A`.
        init: initial guess shaped like ``b`` (zeros if ``None``).
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        maxiter: maximum number of CG steps (``None``: ``10 * b.numel()``).
        M: preconditioner for :math:`A^\top A + \mathrm{ridge}\,I`.
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
        >>> A = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
        >>> solve_normal_cg()(lambda x: A @ x, torch.tensor([3.0, 3.0]))
        tensor([1.0000, 1.0000])

    Note:
        This is the default linear solver of :func:`~torchopt_lite.diff.implicit.custom_root`,
        as in TorchOpt and JAXopt. TorchOpt rebuilds the VJP of ``matvec`` at every CG step.
    """
    policy = check_krylov("solve_normal_cg", ridge, rtol, atol, maxiter, strict, on_nonconvergence)

    def solve(matvec: Matvec, b: TensorTree) -> TensorTree:
        rmatvec = make_rmatvec(matvec, b if init is None else init)
        normal = make_normal_matvec(matvec, rmatvec)
        if ridge is not None:
            normal = make_ridge_matvec(normal, ridge=ridge)
        return run_cg("normal_cg", normal, rmatvec(b), init, rtol, atol, maxiter, M, policy, info)

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
    return bind_system("solve_normal_cg", solve_normal_cg, options, solve, matvec, b)
