"""AdaGrad's rescaling: by the root of the sum of squared updates."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import full_like_leaves, rsqrt_denominator
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByRssState(NamedTuple):
    """State of :func:`scale_by_rss`: the running sum of squares."""

    sum_of_squares: tuple[Tensor, ...]


def scale_by_rss(
    initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> LeafwiseTransformation:
    r"""Divide updates by the root of the running sum of their squares (see :func:`adagrad`).

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad u_t = g_t / (\sqrt{s_t} + \epsilon)
    """
    check_nonnegative("scale_by_rss", "initial_accumulator_value", initial_accumulator_value)
    check_nonnegative("scale_by_rss", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleByRssState:
        return ScaleByRssState(sum_of_squares=full_like_leaves(leaves, initial_accumulator_value))

    def update(
        g: list[Tensor], state: ScaleByRssState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByRssState]:
        sos = ops.addcmul(list(state.sum_of_squares), g, g, 1.0)
        return ops.div(g, rsqrt_denominator(ops, sos, eps)), ScaleByRssState(tuple(sos))

    check = state_check("scale_by_rss", ScaleByRssState, "sum_of_squares")
    return LeafwiseTransformation(Leafwise(init, update, check=check, sparse=True))
