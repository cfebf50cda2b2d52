"""Clipping of the updates: elementwise, by the global norm, by each leaf's RMS."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from torchopt_lite._checks import (
    check_nonnegative,
    check_positive_value,
    real_leaves_check,
    reject_complex_leaves,
)
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation
from torchopt_lite.clip import global_norm


def _empty(leaves: Any) -> EmptyState:
    return EmptyState()


def clip(max_delta: float | Tensor) -> LeafwiseTransformation:
    r"""Clip every element of the updates to :math:`[-\delta, \delta]`.

    .. math::
        u \leftarrow \min(\max(u, -\delta), \delta)

    Args:
        max_delta: :math:`\delta \ge 0`, a float or a 0-d tensor (which may require grad).

    Example:
        >>> t = clip(1.0)
        >>> g = torch.tensor([-3.0, 0.5, 2.0])
        >>> t.update(g, t.init(g))[0]
        tensor([-1.0000,  0.5000,  1.0000])

    Note:
        Optax's ``clip``. A complex leaf has its real and imaginary parts clipped separately.
    """
    check_nonnegative("clip", "max_delta", max_delta)

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        return ops.clamp(g, -max_delta, max_delta), state

    return LeafwiseTransformation(Leafwise(_empty, update))


def clip_by_global_norm(max_norm: float | Tensor) -> LeafwiseTransformation:
    r"""Scale all updates by :math:`c / \lVert u \rVert_2` when their global norm exceeds :math:`c`.

    .. math::
        u \leftarrow \begin{cases} u & \lVert u \rVert_2 \le c \\
        u \, c / \lVert u \rVert_2 & \text{otherwise} \end{cases}

    where :math:`\lVert u \rVert_2` is the Euclidean norm of all leaves together (complex leaves
    count :math:`|z|^2`). The coefficient stays a tensor: no host sync, and with
    ``inplace=False`` it is differentiable (through the norm, and in ``max_norm`` when that is a
    tensor that requires grad).

    Args:
        max_norm: :math:`c \ge 0`, a float or a 0-d tensor.

    Example:
        >>> t = clip_by_global_norm(1.0)
        >>> g = {"a": torch.tensor([3.0]), "b": torch.tensor([4.0])}
        >>> t.update(g, t.init(g))[0]
        {'a': tensor([0.6000]), 'b': tensor([0.8000])}

    References:
        Pascanu et al., `On the difficulty of training recurrent neural networks
        <https://arxiv.org/abs/1211.5063>`_, 2013.

    Note:
        Optax's ``clip_by_global_norm``. :func:`torchopt_lite.clip_grad_norm` (TorchOpt's and
        ``torch.nn.utils.clip_grad_norm_``'s) always multiplies by
        :math:`\min(1, c / (\lVert u \rVert + 10^{-6}))`, so it shrinks the updates slightly even
        below the bound; this one leaves them exactly as they are there. At
        :math:`c = \lVert u \rVert = 0` Optax gives NaN; here the updates (zeros) pass through.
    """
    check_nonnegative("clip_by_global_norm", "max_norm", max_norm)

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        norm = global_norm(ops, g, 2.0)
        keep = norm <= max_norm
        one = torch.ones_like(norm)
        coef = torch.where(keep, one, max_norm / torch.where(keep, one, norm))  # no 0/0
        return ops.mul(g, coef), state

    return LeafwiseTransformation(Leafwise(_empty, update))


def clip_by_block_rms(threshold: float | Tensor) -> LeafwiseTransformation:
    r"""Scale each leaf (block) down so that its root mean square is at most ``threshold``.

    .. math::
        u_i \leftarrow u_i \,/\, \max\bigl(1, \operatorname{rms}(u_i) / \tau\bigr), \qquad
        \operatorname{rms}(u_i) = \sqrt{\operatorname{mean}(u_i^2)}

    for every leaf :math:`u_i` (a weight vector or matrix). Complex leaves are rejected with a
    ``ValueError`` (by ``init`` and ``update``) before anything is written: their real view
    would halve the mean.

    Args:
        threshold: :math:`\tau > 0`, a float or a 0-d tensor.

    Example:
        >>> t = clip_by_block_rms(1.0)
        >>> g = {"a": torch.tensor([3.0, -3.0]), "b": torch.tensor([0.5])}
        >>> t.update(g, t.init(g))[0]
        {'a': tensor([ 1., -1.]), 'b': tensor([0.5000])}

    Note:
        Optax's ``clip_by_block_rms``. An empty leaf stays empty.
    """
    check_positive_value("clip_by_block_rms", "threshold", threshold)

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        norms = ops.norms(g, 2.0)
        denoms = [
            torch.clamp(n / (math.sqrt(max(x.numel(), 1)) * threshold), min=1.0)
            for n, x in zip(norms, g, strict=True)
        ]
        return ops.div(g, denoms), state

    why = "the RMS of a leaf is over its own elements"

    def init(leaves: Any) -> EmptyState:
        reject_complex_leaves("clip_by_block_rms", why, leaves)
        return EmptyState()

    check = real_leaves_check("clip_by_block_rms", why)
    return LeafwiseTransformation(Leafwise(init, update, check=check))
