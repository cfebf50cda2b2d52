"""Adaptive gradient clipping: each unit's update bounded relative to its parameters' norm."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative, real_leaves_check, reject_complex_leaves
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation

Axis = int | tuple[int, ...] | None


def unit_dims(x: Tensor, axis: Axis) -> tuple[int, ...]:
    """The dimensions a unit-wise norm of ``x`` reduces over.

    ``axis=None``: all but the first for ``ndim >= 2`` (torch's ``(out, in, ...)`` layout:
    one unit per output), every dimension for vectors and scalars.
    """
    if axis is not None:
        return (axis,) if isinstance(axis, int) else tuple(axis)
    if x.ndim <= 1:
        return tuple(range(x.ndim))
    return tuple(range(1, x.ndim))


def unitwise_norm(x: Tensor, axis: Axis = None) -> Tensor:
    """The Euclidean norm of each unit of ``x`` (see :func:`unit_dims`), broadcastable to it."""
    dims = unit_dims(x, axis)
    if not dims:  # a scalar: its own unit
        return x.abs()
    return torch.linalg.vector_norm(x, 2, dim=dims, keepdim=True)


def adaptive_grad_clip(
    clipping: float | Tensor, eps: float | Tensor = 1e-3, axis: Axis = None
) -> LeafwiseTransformation:
    r"""Clip each unit's update to at most ``clipping`` times its parameters' norm (AGC).

    .. math::
        u_k \leftarrow \begin{cases} u_k & \lVert u_k \rVert < m_k \\
        u_k \, m_k / \max(\lVert u_k \rVert, 10^{-6}) & \text{otherwise} \end{cases},
        \qquad m_k = \lambda \max(\lVert \theta_k \rVert, \epsilon)

    for every unit :math:`k` of every leaf: the slice of one output (all dimensions but the first
    for a matrix or a convolution kernel in torch's ``(out, in, ...)`` layout), the whole leaf for
    a vector or a scalar. Needs the params (``update(g, state, params=params)``). Complex leaves
    are rejected with a ``ValueError`` (by ``init`` and ``update``) before anything is written.

    Args:
        clipping: :math:`\lambda \ge 0`, the largest ratio of a unit's update norm to its
            parameter norm.
        eps: :math:`\epsilon \ge 0`, the smallest parameter norm used, so that zero-initialized
            parameters still move.
        axis: the dimension(s) each norm reduces over, the same for every leaf; ``None`` for the
            per-layout default above.

    Example:
        >>> t = adaptive_grad_clip(0.1)
        >>> p, g = torch.ones(2, 2), torch.tensor([[3.0, 4.0], [0.0, 0.1]])
        >>> t.update(g, t.init(p), params=p)[0]
        tensor([[0.0849, 0.1131],
                [0.0000, 0.1000]])

    References:
        Brock et al., `High-Performance Large-Scale Image Recognition Without Normalization
        <https://arxiv.org/abs/2102.06171>`_, 2021.

    Note:
        Optax's ``adaptive_grad_clip``, with the same math for the same ``axis``. Its default
        units follow JAX's layouts (``(in, out)`` matrices, ``HWIO`` kernels: it reduces over the
        leading dimensions); ours follow torch's ``(out, in, ...)``, so a torch weight gets the
        units a JAX weight gets in Optax: per output.
    """
    check_nonnegative("adaptive_grad_clip", "clipping", clipping)
    check_nonnegative("adaptive_grad_clip", "eps", eps, what="epsilon")

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        coefs = []
        for u, p in zip(g, params, strict=True):
            g_norm, p_norm = unitwise_norm(u, axis), unitwise_norm(p, axis)
            max_norm = clipping * torch.clamp(p_norm, min=eps)
            ratio = max_norm / torch.clamp(g_norm, min=1e-6)
            coefs.append(torch.where(g_norm < max_norm, torch.ones_like(ratio), ratio))
        return ops.mul(g, coefs), state

    why = "unit-wise norms depend on the shape"

    def init(leaves: Any) -> EmptyState:
        reject_complex_leaves("adaptive_grad_clip", why, leaves)
        return EmptyState()

    check = real_leaves_check("adaptive_grad_clip", why)
    impl = Leafwise(init, update, check=check, needs_params="adaptive_grad_clip")
    return LeafwiseTransformation(impl)
