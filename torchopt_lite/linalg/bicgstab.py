"""BiCGSTAB on trees of tensors, for non-symmetric systems, without host syncs per step."""

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


class _BiCGStabState(NamedTuple):
    x: Leaves
    r: Leaves
    p: Leaves
    v: Leaves
    rho: Tensor
    alpha: Tensor
    omega: Tensor
    rs: Tensor  # <r, r>
    steps: Tensor  # steps taken while active


def bicgstab(
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
    r"""Solve :math:`A x = b` for a general (non-symmetric) real :math:`A` by BiCGSTAB.

    Van der Vorst's stabilised bi-conjugate gradient with right preconditioner :math:`M`
    (shadow residual :math:`\hat r = r_0`):

    .. math::
        \rho_k = \langle \hat r, r_k\rangle, \quad
        p_k = r_k + \tfrac{\rho_k}{\rho_{k-1}}\tfrac{\alpha_{k-1}}{\omega_{k-1}}
        (p_{k-1} - \omega_{k-1} v_{k-1}), \quad v_k = A M p_k, \quad
        \alpha_k = \tfrac{\rho_k}{\langle \hat r, v_k\rangle},

    .. math::
        s = r_k - \alpha_k v_k, \quad t = A M s, \quad
        \omega_k = \tfrac{\langle t, s\rangle}{\langle t, t\rangle}, \quad
        x_{k+1} = x_k + M(\alpha_k p_k + \omega_k s), \quad r_{k+1} = s - \omega_k t.

    Two matvecs per step. Stopping rule, masking, ``maxiter`` and ``strict`` are those of
    :func:`~torchopt_lite.linalg.cg`. A breakdown (:math:`\langle \hat r, v\rangle = 0`) freezes
    the iterate, which ``strict`` then reports as non-convergence.

    Args:
        A: the operator, a callable ``x -> A x`` or a tree of square matrices applied leafwise.
        b: right-hand side, a tensor or tree of real tensors.
        x0: initial guess shaped like ``b`` (zeros if ``None``).
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        maxiter: maximum number of steps; ``None`` means ``10 * b.numel()`` (at least 1).
        M: right preconditioner approximating :math:`A^{-1}`.
        strict: non-convergence policy, as in :func:`~torchopt_lite.linalg.cg`.
        on_nonconvergence: ``"raise"``, ``"warn"`` or ``"ignore"``, as in
            :func:`~torchopt_lite.linalg.cg` (give this or ``strict``).
        info: a callback receiving the :class:`~torchopt_lite.linalg.SolveInfo` of an eager
            solve, as in :func:`~torchopt_lite.linalg.cg`.

    Returns:
        The solution, a tree shaped like ``b``.

    Example:
        >>> A = torch.tensor([[3.0, 1.0], [-1.0, 2.0]])
        >>> bicgstab(lambda x: A @ x, torch.tensor([1.0, 0.0]))
        tensor([0.2857, 0.1429])

    Note:
        TorchOpt has no solver for non-symmetric systems other than normal CG, which squares
        the condition number.
    """
    policy = resolve_policy("bicgstab", strict, on_nonconvergence, maxiter)
    prob = LeafProblem("bicgstab", A, b, x0, rtol, atol, maxiter, M)
    if not prob.b:
        return b
    precond = prob.M if prob.M is not None else (lambda xs: xs)
    if prob.x0 is None:
        x = [torch.zeros_like(t) for t in prob.b]
        r = list(prob.b)
    else:
        x = prob.x0
        r = [bi - ai for bi, ai in zip(prob.b, prob.A(x), strict=True)]
    r_hat = r
    tol2 = prob.tol2
    one = torch.ones_like(tol2)
    zeros = [torch.zeros_like(t) for t in r]

    def step(s: _BiCGStabState) -> _BiCGStabState:
        active = s.rs > tol2
        rho = vdot(r_hat, s.r)
        den = s.rho * s.omega
        beta = safe_div(rho * s.alpha, den, active & (den != 0))
        p = [ri + beta * (pi - s.omega * vi) for ri, pi, vi in zip(s.r, s.p, s.v, strict=True)]
        mp = precond(p)
        v = prob.A(mp)
        rv = vdot(r_hat, v)
        ok = active & (rv != 0)
        alpha = safe_div(rho, rv, ok)
        s_res = axpy(-alpha, v, s.r)
        ms = precond(s_res)
        t = prob.A(ms)
        tt = vdot(t, t)
        omega = safe_div(vdot(t, s_res), tt, ok & (tt != 0))  # t = 0 means s = 0: done
        x = [xi + alpha * a + omega * c for xi, a, c in zip(s.x, mp, ms, strict=True)]
        r = axpy(-omega, t, s_res)
        rs = vdot(r, r)
        return _BiCGStabState(
            select(ok, x, s.x),
            select(ok, r, s.r),
            select(ok, p, s.p),
            select(ok, v, s.v),
            torch.where(ok, rho, s.rho),
            torch.where(ok, alpha, s.alpha),
            torch.where(ok, omega, s.omega),
            torch.where(ok, rs, s.rs),
            s.steps + ok.long(),
        )

    count = torch.zeros((), dtype=torch.long, device=tol2.device)
    start = _BiCGStabState(x, r, zeros, zeros, one, one, one, vdot(r, r), count)
    state = iterate(step, start, lambda s: s.rs > tol2, prob.maxiter, prob.sync)
    report("bicgstab", info, prob, state.x, state.steps, state.rs <= tol2)
    x = finish("bicgstab", state.x, state.rs, tol2, prob.maxiter, policy, prob.sync)
    return prob.unflatten(x)
