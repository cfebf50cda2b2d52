"""``solve_inv``: a dense direct solve, or a Neumann series."""

from __future__ import annotations

import torch

from torchopt_lite import linalg
from torchopt_lite.linalg.info import (
    InfoCallback,
    SolveInfo,
    emit,
    listening,
    relative_residual,
)
from torchopt_lite.linalg.utils import can_sync
from torchopt_lite.linear_solve._common import bind_system, check_ridge
from torchopt_lite.linear_solve.utils import Matvec, make_ridge_matvec, materialize_matvec
from torchopt_lite.typing import LinearSolver, TensorTree


def solve_inv(
    *,
    ridge: float | None = None,
    ns: bool = False,
    maxiter: int | None = None,
    alpha: float | None = None,
    info: InfoCallback | None = None,
    matvec: Matvec | None = None,
    b: TensorTree | None = None,
) -> LinearSolver:
    r"""Return ``solve(matvec, b)`` solving :math:`(A + \mathrm{ridge}\,I)\,x = b` directly.

    With ``ns=False`` the matrix is materialised densely over all leaves of ``b``
    (:math:`n` batched matvecs, :math:`O(n^2)` memory) and solved by LU
    (:func:`torch.linalg.solve`): exact, for small problems. With ``ns=True`` it runs the
    Neumann series :func:`torchopt_lite.linalg.ns`, :math:`x \approx \alpha \sum_{k \le K}
    (I - \alpha A)^k b`, which needs the spectral radius of :math:`I - \alpha A` below 1.

    Args:
        ridge: optional :math:`\mathrm{ridge} \ge 0` added to the diagonal.
        ns: use the Neumann series instead of the dense solve.
        maxiter: number of Neumann terms :math:`K` (``ns=True`` only; ``None``: 10).
        alpha: Neumann scaling :math:`\alpha` (``ns=True`` only; ``None``: 1).
        info: a callback receiving each eager solve's :class:`~torchopt_lite.linalg.SolveInfo`
            (the dense solve reports 0 iterations and ``converged=None``).
        matvec: a system's ``matvec(x) = A x`` to bind (TorchOpt's form): the returned solver
            then uses it when called without one.
        b: a right-hand side to bind in the same way.

    Returns:
        A linear solver ``solve(matvec, b) -> x``.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
        >>> solve_inv()(lambda x: A @ x, torch.tensor([3.0, 1.0]))
        tensor([1., 1.])

    Note:
        TorchOpt materialises only each leaf's diagonal block, so it ignores coupling between
        leaves; this solves the full system.
    """
    check_ridge("solve_inv", ridge)
    if not ns and (maxiter is not None or alpha is not None):
        raise ValueError(
            "solve_inv: maxiter and alpha apply only to the Neumann series; pass ns=True or "
            f"leave them unset; got maxiter={maxiter!r}, alpha={alpha!r}."
        )

    def solve(matvec: Matvec, b: TensorTree) -> TensorTree:
        if ridge is not None:
            matvec = make_ridge_matvec(matvec, ridge=ridge)
        if ns:
            return linalg.ns(matvec, b, maxiter, alpha=alpha, info=info)
        A, _, ravel, unravel = materialize_matvec(matvec, b)
        flat_b = ravel(b)
        x = torch.linalg.solve(A, flat_b)
        if can_sync([flat_b]) and listening(info):
            zero = torch.zeros((), dtype=torch.long, device=x.device)
            emit(info, SolveInfo("inv", relative_residual(lambda v: A @ v, x, flat_b), zero, None))
        return unravel(x)

    options = dict(ridge=ridge, ns=ns, maxiter=maxiter, alpha=alpha, info=info)
    return bind_system("solve_inv", solve_inv, options, solve, matvec, b)
