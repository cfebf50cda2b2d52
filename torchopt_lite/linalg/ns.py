"""Neumann-series approximations of :math:`A^{-1} b` and :math:`A^{-1}`."""

from __future__ import annotations

from collections.abc import Callable

import optree
import torch
from torch import Tensor

from torchopt_lite.linalg.info import InfoCallback, SolveInfo, emit, listening, relative_residual
from torchopt_lite.linalg.utils import can_sync, normalize_matvec
from torchopt_lite.typing import TensorTree


def _check(name: str, maxiter: int | None, alpha: float | None) -> int:
    if maxiter is None:
        return 10
    if isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 0:
        raise ValueError(f"{name}: maxiter must be a non-negative int or None; got {maxiter!r}.")
    if alpha is not None and not alpha > 0.0:
        raise ValueError(f"{name}: alpha must be > 0 or None; got {alpha}.")
    return maxiter


def ns(
    A: TensorTree | Callable[[TensorTree], TensorTree],
    b: TensorTree,
    maxiter: int | None = None,
    *,
    alpha: float | None = None,
    info: InfoCallback | None = None,
) -> TensorTree:
    r"""Approximate :math:`A^{-1} b` by a truncated Neumann series.

    .. math::
        A^{-1} b \approx \alpha \sum_{k=0}^{K} (I - \alpha A)^k b,

    which converges when the spectral radius of :math:`I - \alpha A` is below 1.
    Runs exactly :math:`K` = ``maxiter`` matvecs, with no host syncs.

    Args:
        A: a callable ``x -> A x`` or a tree of square matrices applied leafwise.
        b: right-hand side, a tensor or tree of tensors.
        maxiter: number of terms :math:`K` after the first; ``None`` means 10.
        alpha: the scaling :math:`\alpha`; ``None`` means 1.
        info: a callback receiving the :class:`~torchopt_lite.linalg.SolveInfo` of an eager
            solve (its residual costs one more matvec; ``converged`` is ``None``: the series
            has no stopping rule).

    Returns:
        The approximation, a tree shaped like ``b``.

    Example:
        >>> A = torch.tensor([[0.5, 0.1], [0.1, 0.5]])
        >>> ns(A=lambda x: A @ x, b=torch.ones(2), maxiter=50)
        tensor([1.6667, 1.6667])
    """
    k = _check("ns", maxiter, alpha)
    matvec = normalize_matvec(A)
    a = 1.0 if alpha is None else alpha
    term = b
    total = b
    for _ in range(k):
        term = optree.tree_map(lambda t, at: t - a * at, term, matvec(term))
        total = optree.tree_map(torch.add, total, term)
    x = total if alpha is None else optree.tree_map(lambda t: a * t, total)
    leaves = optree.tree_leaves(b)
    if leaves and can_sync(leaves) and listening(info):
        iterations = torch.tensor(k, device=leaves[0].device)
        emit(info, SolveInfo("ns", relative_residual(matvec, x, b), iterations, None))
    return x


def ns_inv(A: TensorTree, maxiter: int | None = None, *, alpha: float | None = None) -> TensorTree:
    r"""Approximate :math:`A^{-1}` leafwise by a truncated Neumann series.

    .. math::
        A^{-1} \approx \alpha \sum_{k=0}^{K} (I - \alpha A)^k,

    accumulated with one matrix product per term (Horner form), not ``matrix_power`` per term.

    Args:
        A: a square matrix or a tree of square matrices.
        maxiter: number of terms :math:`K` after the first; ``None`` means 10.
        alpha: the scaling :math:`\alpha`; ``None`` means 1.

    Returns:
        The approximate inverses, a tree shaped like ``A``.

    Example:
        >>> ns_inv(torch.tensor([[0.5, 0.0], [0.0, 0.8]]), maxiter=60)
        tensor([[2.0000, 0.0000],
                [0.0000, 1.2500]])
    """
    k = _check("ns_inv", maxiter, alpha)
    a = 1.0 if alpha is None else alpha

    def inverse(mat: Tensor) -> Tensor:
        if not isinstance(mat, Tensor) or mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            got = tuple(mat.shape) if isinstance(mat, Tensor) else type(mat).__name__
            raise ValueError(f"ns_inv: A must hold square matrices; got {got}.")
        eye = torch.eye(mat.shape[0], dtype=mat.dtype, device=mat.device)
        step = eye - a * mat
        total = eye
        for _ in range(k):
            total = eye + step @ total
        return a * total

    return optree.tree_map(inverse, A)
