r"""Forward solvers for :math:`x = T(x)`: plain iteration, Anderson acceleration, Broyden."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite.diff.implicit._fixed_point_loop import (
    FixedPointInfo,
    FlatProblem,
    check_options,
    run,
)

FixedPointSolver = Callable[[Callable[[Any], Any], Any], tuple[Any, FixedPointInfo]]


def _ring_write(buffer: Tensor, slot: int, row: Tensor) -> Tensor:
    """``buffer`` with row ``slot`` replaced by ``row``, out of place (works under vmap)."""
    return torch.cat([buffer[:slot], row.unsqueeze(0), buffer[slot + 1 :]])


class _PlainState(NamedTuple):
    x: Tensor
    fx: Tensor


def fixed_point_iteration(
    *,
    damping: float = 1.0,
    maxiter: int = 100,
    rtol: float = 1e-5,
    atol: float = 0.0,
    check_every: int | None = 10,
) -> FixedPointSolver:
    r"""Return ``solver(fn, x0) -> (x, info)`` running the damped (Krasnoselskii-Mann) iteration.

    .. math::
        x_{k+1} = (1 - \beta)\, x_k + \beta\, T(x_k),

    which converges linearly, at the rate of the contraction, when :math:`T` is a contraction and
    :math:`\beta \in (0, 1]`. Every solver of this module stops when
    :math:`\|T(x_k) - x_k\|_2 \le \max(\mathrm{rtol}\,\|T(x_k)\|_2, \mathrm{atol})` over all leaves,
    returns the iterate with the smallest residual and a
    :class:`~torchopt_lite.diff.implicit.FixedPointInfo`, and never reads a value on the host
    inside its loop except the optional convergence check described under ``check_every``.

    Args:
        damping: :math:`\beta \in (0, 1]`.
        maxiter: the most steps (evaluations of ``fn`` after the first).
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        check_every: in eager mode, read the convergence flag on the host once every this many
            steps and stop when every problem has converged; ``None``: never, run ``maxiter``
            steps (what happens anyway under ``torch.func`` transforms and ``torch.compile``;
            steps after a problem's convergence change neither its result nor its report).

    Returns:
        A solver ``solver(fn, x0) -> (x, info)`` for ``fn(x) = T(x)`` on a tensor or a tree of
        floating-point tensors ``x0``.

    Example:
        >>> solver = fixed_point_iteration(maxiter=200, atol=1e-6, rtol=0.0)
        >>> x, info = solver(lambda x: 0.5 * x + 1.0, torch.tensor([0.0]))
        >>> x, int(info.iterations), bool(info.converged)
        (tensor([2.0000]), 20, True)
    """
    check_options("fixed_point_iteration", maxiter, rtol, atol, check_every)
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"fixed_point_iteration: damping must be in (0, 1]; got {damping}.")

    def propose(state: _PlainState, k: int) -> Tensor:
        return state.x + damping * (state.fx - state.x) if damping != 1.0 else state.fx

    def update(state: _PlainState, x: Tensor, fx: Tensor, k: int) -> _PlainState:
        return _PlainState(x, fx)

    options = dict(maxiter=maxiter, rtol=rtol, atol=atol, check_every=check_every)
    return _solver("fixed_point_iteration", _PlainState, propose, update, options)


def _solver(
    name: str, init: Any, propose: Any, update: Any, options: dict[str, Any]
) -> Callable[[Callable[[Any], Any], Any], tuple[Any, FixedPointInfo]]:
    """A solver ``(fn, x0) -> (x, info)`` running one method's steps in the shared loop."""

    def solver(fn: Callable[[Any], Any], x0: Any) -> tuple[Any, FixedPointInfo]:
        return run(FlatProblem(name, fn, x0), init, propose, update, **options)

    return solver


class _AndersonState(NamedTuple):
    X: Tensor  # (m, n) past iterates x_i, a ring buffer
    F: Tensor  # (m, n) their images T(x_i)


def anderson(
    *,
    m: int = 5,
    beta: float = 1.0,
    ridge: float = 1e-4,
    maxiter: int = 100,
    rtol: float = 1e-5,
    atol: float = 0.0,
    check_every: int | None = 10,
) -> FixedPointSolver:
    r"""Return ``solver(fn, x0) -> (x, info)`` running Anderson acceleration (type II).

    With the last :math:`n = \min(k + 1, m)` iterates :math:`x_i`, their images
    :math:`f_i = T(x_i)` and residuals :math:`g_i = f_i - x_i` (the columns of :math:`G`),

    .. math::
        \alpha = \arg\min_{\mathbf 1^\top \alpha = 1} \|G \alpha\|_2^2 + \lambda \|\alpha\|_2^2
        = \frac{(G^\top G + \lambda I)^{-1} \mathbf 1}
               {\mathbf 1^\top (G^\top G + \lambda I)^{-1} \mathbf 1}, \qquad
        x_{k+1} = \beta \sum_i \alpha_i f_i + (1 - \beta) \sum_i \alpha_i x_i,

    with the ridge :math:`\lambda = \mathrm{ridge} \cdot \operatorname{tr}(G^\top G) / n` (relative,
    so the mixing does not depend on the scale of the residuals; a tiny floor keeps an exactly
    converged history solvable). The :math:`n \times n` system is solved by
    :func:`torch.linalg.solve_ex`, which does not check for singularity on the host. Stopping and
    the report are those of :func:`fixed_point_iteration`; one evaluation of :math:`T` per step.

    Args:
        m: memory, the number of past iterates mixed (``m = 1`` is the damped iteration).
        beta: mixing :math:`\beta \in (0, 1]`.
        ridge: relative regularisation of the least-squares problem, ``>= 0``.
        maxiter: the most steps.
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        check_every: the host convergence check, as in :func:`fixed_point_iteration`.

    Returns:
        A solver ``solver(fn, x0) -> (x, info)``.

    Example:
        >>> A = torch.tensor([[0.5, 0.4], [-0.3, 0.6]])
        >>> x, info = anderson(m=3, atol=1e-6, rtol=0.0)(lambda x: A @ x + 1.0, torch.zeros(2))
        >>> x, bool(info.converged)
        (tensor([2.5000, 0.6250]), True)

    References:
        Walker & Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal.,
        2011. Bai, Kolter & Koltun, "Deep equilibrium models", NeurIPS 2019 (and the DEQ
        tutorial's batched implementation).
    """
    check_options("anderson", maxiter, rtol, atol, check_every)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"anderson: m must be a positive int; got {m!r}.")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"anderson: beta must be in (0, 1]; got {beta}.")
    if not ridge >= 0.0:
        raise ValueError(f"anderson: ridge must be >= 0; got {ridge}.")

    def init(x: Tensor, fx: Tensor) -> _AndersonState:
        return _AndersonState(x.unsqueeze(0).expand(m, -1), fx.unsqueeze(0).expand(m, -1))

    def propose(state: _AndersonState, k: int) -> Tensor:
        n = min(k + 1, m)
        X, F = state.X[:n], state.F[:n]
        G = F - X
        H = G @ G.T
        floor = torch.finfo(H.dtype).tiny ** 0.5
        lam = ridge * torch.diagonal(H).mean() + floor
        eye = torch.eye(n, dtype=H.dtype, device=H.device)
        w, _ = torch.linalg.solve_ex(H + lam * eye, torch.ones_like(H[:, :1]))
        alpha = w[:, 0] / w.sum()
        return beta * (alpha @ F) + (1.0 - beta) * (alpha @ X) if beta != 1.0 else alpha @ F

    def update(state: _AndersonState, x: Tensor, fx: Tensor, k: int) -> _AndersonState:
        slot = (k + 1) % m
        return _AndersonState(_ring_write(state.X, slot, x), _ring_write(state.F, slot, fx))

    options = dict(maxiter=maxiter, rtol=rtol, atol=atol, check_every=check_every)
    return _solver("anderson", init, propose, update, options)


class _BroydenState(NamedTuple):
    x: Tensor
    g: Tensor  # g(x) = T(x) - x
    U: Tensor  # (memory, n): H = -I + sum_i u_i v_i^T approximates (dg/dx)^{-1}
    V: Tensor


def _inv_jac(U: Tensor, V: Tensor, y: Tensor) -> Tensor:
    r""":math:`H y = -y + \sum_i u_i (v_i^\top y)`."""
    return -y + (V @ y) @ U


def _inv_jac_t(U: Tensor, V: Tensor, y: Tensor) -> Tensor:
    r""":math:`H^\top y = -y + \sum_i v_i (u_i^\top y)`."""
    return -y + (U @ y) @ V


def broyden(
    *,
    memory: int | None = None,
    maxiter: int = 100,
    rtol: float = 1e-5,
    atol: float = 0.0,
    check_every: int | None = 10,
) -> FixedPointSolver:
    r"""Return ``solver(fn, x0) -> (x, info)`` running (limited-memory) good Broyden.

    Newton's method on :math:`g(x) = T(x) - x` with an inverse-Jacobian estimate
    :math:`H_k \approx (\partial_x g)^{-1}`, started at :math:`H_0 = -I` (the iteration's own
    guess) and kept as low-rank terms :math:`H_k = -I + \sum_i u_i v_i^\top`:

    .. math::
        x_{k+1} = x_k - H_k\, g(x_k), \qquad
        H_{k+1} = H_k + \frac{(\Delta x - H_k \Delta g)\, \Delta x^\top H_k}
                             {\Delta x^\top H_k \Delta g},

    with :math:`\Delta x = x_{k+1} - x_k`, :math:`\Delta g = g(x_{k+1}) - g(x_k)` (Sherman-Morrison
    form of Broyden's "good" update). The first step is a plain iteration. With ``memory``
    smaller than the number of steps the oldest pair :math:`(u_i, v_i)` is overwritten, as in Bai
    et al.'s DEQ solver; a zero denominator skips the update. Stopping and the report are those of
    :func:`fixed_point_iteration` (the iterate with the smallest residual is returned, as
    Broyden's residuals are not monotone); one evaluation of :math:`T` per step.

    Args:
        memory: the number of rank-one terms kept (``None``: ``maxiter``, all of them).
        maxiter: the most steps.
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        check_every: the host convergence check, as in :func:`fixed_point_iteration`.

    Returns:
        A solver ``solver(fn, x0) -> (x, info)``.

    Example:
        >>> A = torch.tensor([[0.5, 0.4], [-0.3, 0.6]])
        >>> x, info = broyden(atol=1e-6, rtol=0.0)(lambda x: A @ x + 1.0, torch.zeros(2))
        >>> x, int(info.iterations)                # exact in 2n steps on a linear map
        (tensor([2.5000, 0.6250]), 4)

    References:
        Broyden, "A class of methods for solving nonlinear simultaneous equations", Math. Comp.,
        1965. Bai, Kolter & Koltun, "Deep equilibrium models", NeurIPS 2019.
    """
    check_options("broyden", maxiter, rtol, atol, check_every)
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int) or memory < 1
    ):
        raise ValueError(f"broyden: memory must be a positive int or None; got {memory!r}.")
    mem = max(maxiter, 1) if memory is None else memory

    def init(x: Tensor, fx: Tensor) -> _BroydenState:
        zeros = torch.zeros_like(x).unsqueeze(0).expand(mem, -1)
        return _BroydenState(x, fx - x, zeros, zeros)

    def propose(state: _BroydenState, k: int) -> Tensor:
        n = min(k, mem)  # rows written so far; the others are zero
        return state.x - _inv_jac(state.U[:n], state.V[:n], state.g)

    def update(state: _BroydenState, x: Tensor, fx: Tensor, k: int) -> _BroydenState:
        g = fx - x
        dx, dg = x - state.x, g - state.g
        U, V = state.U[: min(k, mem)], state.V[: min(k, mem)]
        v = _inv_jac_t(U, V, dx)
        den = torch.dot(v, dg)
        usable = (den != 0) & torch.isfinite(den)
        scale = torch.where(usable, 1.0 / torch.where(usable, den, torch.ones_like(den)), 0.0)
        u = (dx - _inv_jac(U, V, dg)) * scale
        v = torch.where(usable, v, torch.zeros_like(v))
        slot = k % mem
        return _BroydenState(x, g, _ring_write(state.U, slot, u), _ring_write(state.V, slot, v))

    options = dict(maxiter=maxiter, rtol=rtol, atol=atol, check_every=check_every)
    return _solver("broyden", init, propose, update, options)
