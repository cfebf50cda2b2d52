"""L-BFGS memory: a ring buffer of curvature pairs and the two-loop recursion over it."""

from __future__ import annotations

import torch
from torch import Tensor


def two_loop(
    q: Tensor,
    s_mem: Tensor,
    y_mem: Tensor,
    rho: Tensor,
    gamma: Tensor | float,
    head: Tensor | int,
) -> Tensor:
    r"""The product :math:`H q` of the L-BFGS inverse-Hessian estimate with a flat vector.

    Algorithm 7.4 of Nocedal and Wright: with pairs :math:`(s_i, y_i)`,
    :math:`\rho_i = 1 / y_i^\top s_i`, newest first
    :math:`\alpha_i = \rho_i s_i^\top q,\ q \leftarrow q - \alpha_i y_i`; then
    :math:`r = \gamma q`; oldest first
    :math:`\beta_i = \rho_i y_i^\top r,\ r \leftarrow r + (\alpha_i - \beta_i) s_i`.

    ``s_mem``/``y_mem`` are ``(m, n)`` ring buffers and ``rho`` is ``(m,)``; ``head`` (a 0-d
    integer tensor or an int) is the slot of the oldest pair, the next one to be overwritten.
    An empty slot holds zeros (``rho = 0``), which leaves ``q`` unchanged, so no count of
    filled slots is read. Pure and differentiable.
    """
    m = rho.shape[0]
    order = (head + torch.arange(m, device=rho.device)) % m
    s, y, r = s_mem.index_select(0, order), y_mem.index_select(0, order), rho.index_select(0, order)
    alphas: list[Tensor] = [rho.new_zeros(())] * m
    for i in reversed(range(m)):
        alphas[i] = s[i].dot(q) * r[i]
        q = torch.addcmul(q, y[i], -alphas[i])  # q.add(y, alpha=-a), as torch: one rounding
    q = q * gamma
    for i in range(m):
        beta = y[i].dot(q) * r[i]
        q = torch.addcmul(q, s[i], alphas[i] - beta)
    return q


def push(memory: Tensor, index: Tensor, row: Tensor, inplace: bool) -> Tensor:
    """``memory[index] = row`` for a 0-d integer ``index``: written in place or on a copy."""
    idx, src = index.reshape(1), row.unsqueeze(0).to(memory.dtype)
    return memory.index_copy_(0, idx, src) if inplace else memory.index_copy(0, idx, src)
