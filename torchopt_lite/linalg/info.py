"""What a linear solve reports: residual, iterations, convergence (``SolveInfo``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import optree
import torch
from torch import Tensor

OnNonconvergence = Literal["raise", "warn", "ignore"]
InfoCallback = Callable[["SolveInfo"], Any]

_RECORDERS: list[list[SolveInfo]] = []  # the lists of the open record_solves() blocks


class SolveInfo(NamedTuple):
    r"""The outcome of one linear solve :math:`A x = b`.

    Attributes:
        solver: the solver's name (``"cg"``, ``"bicgstab"``, ``"normal_cg"``, ``"ns"``,
            ``"inv"``).
        residual: relative residual :math:`\|b - A x\| / \|b\|` of the returned ``x``, computed
            by one extra matvec (the absolute residual when :math:`b = 0`), a 0-d tensor. The
            system is the one the solver iterates on: :math:`A + \mathrm{ridge}\,I` with a
            ridge, the normal equations :math:`A^\top A x = A^\top b` for ``"normal_cg"``.
        iterations: steps taken (matvecs of the iteration), a 0-d int64 tensor; 0 for the dense
            solve.
        converged: whether the stopping rule :math:`\|r\| \le \max(\mathrm{rtol}\|b\|,
            \mathrm{atol})` was met (a 0-d bool tensor); ``None`` for solvers without one (the
            Neumann series, the dense solve).
    """

    solver: str
    residual: Tensor
    iterations: Tensor
    converged: Tensor | None

    def __str__(self) -> str:
        state = (
            ""
            if self.converged is None
            else (", converged" if bool(self.converged.all()) else ", NOT converged")
        )
        return (
            f"{self.solver}: {int(self.iterations.max())} iterations, relative residual "
            f"{float(self.residual.max()):.2e}{state}"
        )


@contextlib.contextmanager
def record_solves() -> Iterator[list[SolveInfo]]:
    """Collect the :class:`SolveInfo` of every eager linear solve run inside the block.

    Every solver of :mod:`torchopt_lite.linalg` and :mod:`torchopt_lite.linear_solve` reports
    to all open blocks (on any thread: the backward pass of
    :func:`~torchopt_lite.diff.implicit.custom_root` may run on autograd's device threads), so
    the info of the linear solve inside a ``backward()`` is the last entry of the list.
    Solves under ``torch.func`` transforms or ``torch.compile`` report nothing: their values
    live inside the transform.

    Yields:
        The list the infos are appended to, in the order the solves finish.

    Example:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> with record_solves() as infos:
        ...     x = torchopt_lite.linalg.cg(lambda v: A @ v, torch.tensor([1.0, 2.0]))
        >>> infos[-1].solver, int(infos[-1].iterations)
        ('cg', 2)
    """
    infos: list[SolveInfo] = []
    _RECORDERS.append(infos)
    try:
        yield infos
    finally:
        for i, recorder in enumerate(_RECORDERS):
            if recorder is infos:
                del _RECORDERS[i]
                break


def listening(callback: InfoCallback | None) -> bool:
    """Whether a solve must build its :class:`SolveInfo` (a callback or an open recorder)."""
    return callback is not None or bool(_RECORDERS)


def emit(callback: InfoCallback | None, info: SolveInfo) -> None:
    """Hand ``info`` to ``callback`` and to every open :func:`record_solves` block."""
    if callback is not None:
        callback(info)
    for recorder in list(_RECORDERS):
        recorder.append(info)


def relative_residual(matvec: Callable[[Any], Any], x: Any, b: Any) -> Tensor:
    r""":math:`\|b - A x\| / \|b\|` over all leaves (:math:`\|b - A x\|` when :math:`b = 0`)."""
    with torch.no_grad():
        ax = optree.tree_leaves(matvec(x))
        bs = optree.tree_leaves(b)
        r2 = sum(((bi - ai).abs() ** 2).sum() for bi, ai in zip(bs, ax, strict=True))
        b2 = sum((bi.abs() ** 2).sum() for bi in bs)
        rn, bn = torch.as_tensor(r2).sqrt(), torch.as_tensor(b2).sqrt()
        return torch.where(bn > 0, rn / torch.where(bn > 0, bn, torch.ones_like(bn)), rn)
