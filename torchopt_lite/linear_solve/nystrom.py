"""``solve_nystrom_pcg``: CG preconditioned by a randomized Nystrom approximation."""

from __future__ import annotations

import optree

from torchopt_lite import linalg
from torchopt_lite.linalg.info import InfoCallback, OnNonconvergence
from torchopt_lite.linalg.nystrom import check_sketch, nystrom, nystrom_precond
from torchopt_lite.linear_solve._common import bind_system, check_krylov
from torchopt_lite.linear_solve.utils import Matvec, make_ridge_matvec
from torchopt_lite.pytree import tree_ravel
from torchopt_lite.typing import LinearSolver, TensorTree


def solve_nystrom_pcg(
    *,
    rank: int = 20,
    ridge: float | None = None,
    init: TensorTree | None = None,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    strict: bool | None = None,
    on_nonconvergence: OnNonconvergence | None = None,
    info: InfoCallback | None = None,
    seed: int = 0,
    matvec: Matvec | None = None,
    b: TensorTree | None = None,
) -> LinearSolver:
    r"""Return ``solve(matvec, b)`` solving :math:`(A + \mu I)\,x = b` by Nystrom-preconditioned CG.

    :math:`A` must be symmetric positive semi-definite (:math:`A + \mu I` definite), and
    :math:`\mu` is ``ridge`` (0 if ``None``). Each solve first sketches :math:`A` with
    ``rank`` matvecs (one batched call) into :math:`\hat A = U \operatorname{diag}(\lambda)
    U^\top` (:func:`torchopt_lite.linalg.nystrom`), then runs CG
    (:func:`torchopt_lite.linalg.cg`, one matvec per step) on the tree ``b`` with the
    preconditioner

    .. math::
        P^{-1} = (\lambda_\ell + \mu)\, U (\Lambda + \mu I)^{-1} U^\top + (I - U U^\top).

    When the spectrum of :math:`A` decays (Hessians of regularised regression, of
    over-parameterised models), the preconditioned condition number is about
    :math:`(\lambda_\ell + \mu) / (\lambda_{\min} + \mu)` instead of
    :math:`(\lambda_1 + \mu) / (\lambda_{\min} + \mu)`, and CG needs far fewer steps: the
    ``rank`` matvecs of the sketch buy back many more. Extra memory: :math:`n \times \ell`.

    Args:
        rank: sketch size :math:`\ell` (matvecs spent on the preconditioner); clamped to the
            size of ``b``.
        ridge: optional :math:`\mathrm{ridge} \ge 0` added to the diagonal (the shift
            :math:`\mu` of the preconditioner too).
        init: initial guess shaped like ``b`` (zeros if ``None``).
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        maxiter: maximum number of CG steps (``None``: ``10 * b.numel()``).
        strict: non-convergence policy (``None``: raise unless ``maxiter`` is given).
        on_nonconvergence: ``"raise"`` (:class:`~torchopt_lite.linalg.ConvergenceError`),
            ``"warn"`` (:class:`~torchopt_lite.linalg.ConvergenceWarning`, then the last
            iterate) or ``"ignore"``; ``None`` follows ``strict``. Give one of the two.
        info: a callback receiving each eager solve's :class:`~torchopt_lite.linalg.SolveInfo`
            of the CG iteration (the ``rank`` matvecs of the sketch are not counted in it).
        seed: seed of the Gaussian test matrix (see :func:`torchopt_lite.linalg.nystrom`):
            each solve draws the same one, so solves are reproducible.
        matvec: a system's ``matvec(x) = A x`` to bind (TorchOpt's form): the returned solver
            then uses it when called without one.
        b: a right-hand side to bind in the same way.

    Returns:
        A linear solver ``solve(matvec, b) -> x``.

    Example:
        >>> A = torch.diag(torch.logspace(0, -6, 50, dtype=torch.float64))
        >>> x = solve_nystrom_pcg(rank=20, ridge=1e-3, rtol=1e-10)(
        ...     lambda v: A @ v, torch.ones(50, dtype=torch.float64))
        >>> x[[0, -1]] * (torch.diagonal(A)[[0, -1]] + 1e-3)   # (A + ridge I) x = 1
        tensor([1.0000, 1.0000], dtype=torch.float64)

    Note:
        Not in TorchOpt. ``matvec`` must run under :func:`torch.func.vmap` (the sketch is one
        batched call). The test matrix is drawn on the host by NumPy, so the solve runs under
        ``vmap`` and :func:`~torch.func.jacrev` like the other solvers.

    References:
        Frangella, Tropp and Udell, *Randomized Nystrom preconditioning*, SIAM J. Matrix Anal.
        Appl. 44(2), 2023.
    """
    check_sketch("solve_nystrom_pcg", rank, seed)
    policy = check_krylov(
        "solve_nystrom_pcg", ridge, rtol, atol, maxiter, strict, on_nonconvergence
    )
    mu = 0.0 if ridge is None else ridge

    def solve(matvec: Matvec, b: TensorTree) -> TensorTree:
        if not optree.tree_leaves(b):
            return b
        approx = nystrom(matvec, b, rank, seed=seed)
        flat_precond = nystrom_precond(approx, mu)
        _, unravel = tree_ravel(b)

        def precond(r: TensorTree) -> TensorTree:
            return unravel(flat_precond(tree_ravel(r)[0]))

        system = matvec if ridge is None else make_ridge_matvec(matvec, ridge=ridge)
        return linalg.cg(
            system,
            b,
            init,
            rtol=rtol,
            atol=atol,
            maxiter=maxiter,
            M=precond,
            on_nonconvergence=policy,
            info=info,
        )

    options = dict(
        rank=rank,
        ridge=ridge,
        init=init,
        rtol=rtol,
        atol=atol,
        maxiter=maxiter,
        strict=strict,
        on_nonconvergence=on_nonconvergence,
        info=info,
        seed=seed,
    )
    return bind_system("solve_nystrom_pcg", solve_nystrom_pcg, options, solve, matvec, b)
