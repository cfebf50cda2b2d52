"""RMSProp's rescalings: by the root mean square, or by the (centred) standard deviation."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    ema,
    ema_sq,
    full_like_leaves,
    rsqrt_denominator,
    zeros_like_leaves,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: the running mean of squares ``nu``."""

    nu: tuple[Tensor, ...]


@register_state_type
class ScaleByRStdDevState(NamedTuple):
    """State of :func:`scale_by_stddev`: running means of updates ``mu`` and squares ``nu``."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]


def scale_by_rms(
    alpha: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0
) -> LeafwiseTransformation:
    r"""Divide updates by the root of a running mean of their squares (see :func:`rmsprop`).

    .. math::
        v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2, \qquad u_t = g_t / (\sqrt{v_t} + \epsilon)
    """
    check_in_range("scale_by_rms", "alpha", alpha, 0.0, 1.0, closed_high=True)
    check_nonnegative("scale_by_rms", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleByRmsState:
        return ScaleByRmsState(nu=full_like_leaves(leaves, initial_scale))

    def update(
        g: list[Tensor], state: ScaleByRmsState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByRmsState]:
        nu = ema_sq(ops, list(state.nu), g, alpha)
        return ops.div(g, rsqrt_denominator(ops, nu, eps)), ScaleByRmsState(nu=tuple(nu))

    check = state_check("scale_by_rms", ScaleByRmsState, "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))


def scale_by_stddev(
    alpha: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0
) -> LeafwiseTransformation:
    r"""Divide updates by a running estimate of their standard deviation (centred RMSProp).

    .. math::
        \mu_t = \alpha \mu_{t-1} + (1-\alpha) g_t, \quad v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,
        \quad u_t = g_t / (\sqrt{v_t - \mu_t^2} + \epsilon)
    """
    check_in_range("scale_by_stddev", "alpha", alpha, 0.0, 1.0, closed_high=True)
    check_nonnegative("scale_by_stddev", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleByRStdDevState:
        return ScaleByRStdDevState(
            mu=zeros_like_leaves(leaves), nu=full_like_leaves(leaves, initial_scale)
        )

    def update(
        g: list[Tensor], state: ScaleByRStdDevState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByRStdDevState]:
        mu = ema(ops, list(state.mu), g, alpha)
        nu = ema_sq(ops, list(state.nu), g, alpha)
        variance = ops.fresh.addcmul(nu, mu, mu, -1.0)
        denom = ops.add_scalar(ops.sqrt(variance), eps)
        return ops.div(g, denom), ScaleByRStdDevState(mu=tuple(mu), nu=tuple(nu))

    check = state_check("scale_by_stddev", ScaleByRStdDevState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
