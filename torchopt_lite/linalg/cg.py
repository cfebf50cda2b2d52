"""Conjugate gradient on trees of tensors, without host syncs inside the iteration."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from torchopt_lite.linalg._krylov import (
    LeafProblem,
    Leaves,
    axpy,
    finish,
    iterate,
    report,
    resolve_policy,
    safe_div,
    select,
    vdot,
)
from torchopt_lite.linalg.info import InfoCallback, OnNonconvergence
from torchopt_lite.typing import TensorTree


class _CGState(NamedTuple):
    x: Leaves
    r: Leaves
    p: Leaves
    gamma: Tensor  # <r, M r>
    rs: Tensor  # <r, r>
    steps: Tensor  # steps taken while active


def cg(
    A: TensorTree | Callable[[TensorTree], TensorTree],
    b: TensorTree,
    x0: TensorTree | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    M: TensorTree | Callable[[TensorTree], TensorTree] | None = None,
    strict: bool | None = None,
    on_nonconvergence: OnNonconvergence | None = None,
    info: InfoCallback | None = None,
) -> TensorTree:
    r"""Solve :math:`A x = b` for a symmetric positive definite :math:`A` by conjugate gradient.

    With residual :math:`r_k = b - A x_k`, preconditioned residual :math:`z_k = M r_k` and
    :math:`\gamma_k = \langle r_k, z_k\rangle`:

    .. math::
        \alpha_k = \frac{\gamma_k}{\langle p_k, A p_k\rangle}, \quad
        x_{k+1} = x_k + \alpha_k p_k, \quad r_{k+1} = r_k - \alpha_k A p_k, \quad
        p_{k+1} = z_{k+1} + \frac{\gamma_{k+1}}{\gamma_k} p_k,

    stopping when :math:`\|r_k\| \le \max(\mathrm{rtol}\,\|b\|, \mathrm{atol})` (SciPy's
    non-legacy rule). Inner products run over all leaves of the tree.

    Each step is computed for every problem and kept only where the residual is still above
    tolerance, so no step reads a value on the host: in eager mode the loop checks convergence
    once every 10 steps to stop early; under ``torch.func`` transforms (``vmap``, ``grad``,
    ``jacrev``) and ``torch.compile`` it runs ``maxiter`` masked steps.

    Args:
        A: the operator: a callable ``x -> A x`` on trees shaped like ``b``, or a tree of square
            matrices applied leafwise.
        b: right-hand side, a tensor or tree of tensors of any shapes (0-d included).
        x0: initial guess shaped like ``b``; zeros (and one fewer matvec) if ``None``.
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        maxiter: maximum number of steps; ``None`` means ``10 * b.numel()`` (at least 1).
        M: preconditioner approximating :math:`A^{-1}`, a callable or a tree of matrices.
        strict: what happens when the tolerance is not met after ``maxiter`` steps. ``True``
            raises :class:`~torchopt_lite.linalg.ConvergenceError` (under ``torch.func``
            transforms, which cannot raise on values, the unconverged solutions are NaN);
            ``False`` returns the last iterate (a truncated solve). ``None`` means ``True``
            when ``maxiter`` is ``None`` and ``False`` when you set ``maxiter``.
        on_nonconvergence: the same choice by name, with a third option: ``"raise"``
            (``strict=True``), ``"warn"`` (a :class:`~torchopt_lite.linalg.ConvergenceWarning`,
            then the last iterate; under transforms, the last iterate) or ``"ignore"``
            (``strict=False``). Give this or ``strict``, not both.
        info: a callback, called once after an eager solve with its
            :class:`~torchopt_lite.linalg.SolveInfo` (residual, iterations, convergence), e.g.
            ``infos.append``; see also :func:`~torchopt_lite.linalg.record_solves`.

    Returns:
        The solution, a tree shaped like ``b``.

    Example:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> cg(lambda x: A @ x, torch.tensor([1.0, 2.0]))
        tensor([0.0909, 0.6364])

    Note:
        TorchOpt's ``cg`` reads a float on the host every iteration (so it cannot run under
        ``vmap``), defaults to ``maxiter = 10 * sum(shape)``, which is 0 for a scalar ``b``
        (upstream issue #222), and returns silently when it does not converge. ``strict`` is
        ours.
    """
    policy = resolve_policy("cg", strict, on_nonconvergence, maxiter)
    return run_cg("cg", A, b, x0, rtol, atol, maxiter, M, policy, info)


def run_cg(
    name: str,
    A: TensorTree | Callable[[TensorTree], TensorTree],
    b: TensorTree,
    x0: TensorTree | None,
    rtol: float,
    atol: float,
    maxiter: int | None,
    M: TensorTree | Callable[[TensorTree], TensorTree] | None,
    policy: OnNonconvergence,
    info: InfoCallback | None,
) -> TensorTree:
    """:func:`cg` under a name (for messages and its info) and a resolved policy."""
    prob = LeafProblem(name, A, b, x0, rtol, atol, maxiter, M)
    if not prob.b:
        return b
    precond = prob.M if prob.M is not None else (lambda xs: xs)
    if prob.x0 is None:
        x = [torch.zeros_like(t) for t in prob.b]
        r = list(prob.b)
    else:
        x = prob.x0
        r = [bi - ai for bi, ai in zip(prob.b, prob.A(x), strict=True)]
    z = precond(r)
    rs = vdot(r, r)
    gamma = rs if prob.M is None else vdot(r, z)
    tol2 = prob.tol2

    def step(s: _CGState) -> _CGState:
        active = s.rs > tol2
        Ap = prob.A(s.p)
        alpha = safe_div(s.gamma, vdot(s.p, Ap), active)
        x = axpy(alpha, s.p, s.x)
        r = axpy(-alpha, Ap, s.r)
        z = precond(r)
        rs = vdot(r, r)
        gamma = rs if prob.M is None else vdot(r, z)
        beta = safe_div(gamma, s.gamma, active)
        p = select(active, axpy(beta, s.p, z), s.p)
        return _CGState(x, r, p, torch.where(active, gamma, s.gamma), rs, s.steps + active.long())

    count = torch.zeros((), dtype=torch.long, device=tol2.device)
    state = iterate(
        step, _CGState(x, r, z, gamma, rs, count), lambda s: s.rs > tol2, prob.maxiter, prob.sync
    )
    report(name, info, prob, state.x, state.steps, state.rs <= tol2)
    x = finish(name, state.x, state.rs, tol2, prob.maxiter, policy, prob.sync)
    return prob.unflatten(x)
