"""SM3's rescaling: second moments kept as one accumulator per tensor axis."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import (
    check_in_range,
    check_nonnegative,
    real_leaves_check,
    reject_complex_leaves,
)
from torchopt_lite._dispatch import Facts, Leafwise
from torchopt_lite._moments import ema, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type

_WHY = "per-axis accumulators of a complex leaf's real view would mix its two parts"


@register_state_type
class ScaleBySM3State(NamedTuple):
    """State of :func:`scale_by_sm3`: per-axis accumulators ``acc`` and the momentum ``mu``.

    For a leaf of two or more dimensions, ``acc`` holds its per-axis accumulators concatenated
    (``sum(shape)`` elements); for a vector or scalar leaf, one accumulator per element.
    """

    acc: tuple[Tensor, ...]
    mu: tuple[Tensor, ...]


def _acc_numel(x: Tensor) -> int:
    return sum(x.shape) if x.ndim >= 2 else x.numel()


def _axis_views(acc: Tensor, shape: torch.Size) -> list[Tensor]:
    """The accumulator of each axis of a ``shape`` leaf, shaped to broadcast along it."""
    views, start = [], 0
    for i, n in enumerate(shape):
        views.append(acc[start : start + n].view([1] * i + [n] + [1] * (len(shape) - i - 1)))
        start += n
    return views


def _new_acc(g: Tensor, acc: Tensor, b2: float) -> Tensor:
    r""":math:`c\, g^2 + \beta_2 \min_i a_i`, one accumulator :math:`a_i` per axis.

    :math:`c = 1 - \beta_2`, or 1 at :math:`\beta_2 = 1`.
    """
    bound = acc if g.ndim < 2 else functools.reduce(torch.minimum, _axis_views(acc, g.shape))
    return torch.addcmul(b2 * bound, g, g, value=1.0 - b2 if b2 != 1.0 else 1.0)


def _axis_maxima(v: Tensor) -> Tensor:
    """The per-axis accumulators kept of ``v``: its maxima over all other axes, concatenated."""
    if v.ndim < 2:
        return v
    if v.numel() == 0:  # no maxima over an empty axis
        return v.new_zeros(sum(v.shape))
    others = [[j for j in range(v.ndim) if j != i] for i in range(v.ndim)]
    return torch.cat([v.amax(dim=dims) for dims in others])


def scale_by_sm3(
    b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8, moment_requires_grad: bool = False
) -> LeafwiseTransformation:
    r"""Rescale updates by SM3's per-axis second moments (see :func:`sm3`).

    .. math::
        v_t = c\, g_t^2 + \beta_2 \min_i a_{i, t-1}, \quad
        a_{i,t} = \max_{\text{axes} \ne i} v_t, \quad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t / \sqrt{v_t + \epsilon}, \quad u_t = m_t

    with :math:`c = 1 - \beta_2` (1 when :math:`\beta_2 = 1`); :math:`1/\sqrt{\cdot}` is 0 where
    :math:`v_t = 0`. Complex leaves are rejected (``ValueError``).
    """
    check_in_range("scale_by_sm3", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_sm3", "b2", b2, 0.0, 1.0, closed_high=True)
    check_nonnegative("scale_by_sm3", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleBySM3State:
        reject_complex_leaves("scale_by_sm3", _WHY, leaves)
        acc = tuple(
            x.new_zeros(_acc_numel(x), requires_grad=moment_requires_grad)
            if x.ndim >= 2
            else torch.zeros_like(x, requires_grad=moment_requires_grad)
            for x in leaves
        )
        return ScaleBySM3State(acc=acc, mu=zeros_like_leaves(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleBySM3State, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleBySM3State]:
        v = [_new_acc(x, a, b2) for x, a in zip(g, state.acc, strict=True)]
        positive = [x > 0 for x in v]
        # 1/sqrt(v + eps) where v > 0, else 0; the masked-out branch stays finite (gradients)
        safe = [
            torch.where(p, x + eps, torch.ones_like(x)) for p, x in zip(positive, v, strict=True)
        ]
        scaled = ops.div(g, ops.sqrt(safe))
        scaled = [
            torch.where(p, x, torch.zeros_like(x)) for p, x in zip(positive, scaled, strict=True)
        ]
        mu = ema(ops, list(state.mu), scaled, b1)
        acc = ops.copy(list(state.acc), [_axis_maxima(x) for x in v])
        return ops.copy(g, mu), ScaleBySM3State(acc=tuple(acc), mu=tuple(mu))

    real_only = real_leaves_check("scale_by_sm3", _WHY)

    def check(facts: Facts, state: Any) -> None:
        real_only(facts, state)
        if (
            not isinstance(state, ScaleBySM3State)
            or type(state.acc) is not tuple
            or type(state.mu) is not tuple
            or len(state.acc) != len(facts.leaves)
            or [x.numel() for x in state.acc] != [_acc_numel(x) for x in facts.leaves]
            or [x.shape for x in state.mu] != [x.shape for x in facts.leaves]
        ):
            raise ValueError(
                "scale_by_sm3: state does not match the updates; pass the state returned by "
                "this optimizer's init() for params shaped like the updates."
            )

    return LeafwiseTransformation(Leafwise(init, update, check=check))
