"""RMSProp's rescalings: by the root mean square, or by the (centred) standard deviation."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._leaves import check_leaf_state
from torchopt_lite.base import Leafwise, LeafwiseTransformation
from torchopt_lite.transform._moments import ema, ema_sq, rsqrt_denominator
from torchopt_lite.transform._ops import PURE, ops_for


class ScaleByRmsState(NamedTuple):
    """State of :func:`scale_by_rms`: the running mean of squares ``nu``."""

    nu: tuple[Tensor, ...]


class ScaleByRStdDevState(NamedTuple):
    """State of :func:`scale_by_stddev`: running means of updates ``mu`` and squares ``nu``."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]


def _full_like(leaves: Any, value: float) -> tuple[Tensor, ...]:
    return tuple(torch.full_like(x, value) for x in leaves)


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
        return ScaleByRmsState(nu=_full_like(leaves, initial_scale))

    def update(
        g: list[Tensor], state: ScaleByRmsState, params: Any, inplace: bool
    ) -> tuple[list[Tensor], ScaleByRmsState]:
        check_leaf_state("scale_by_rms", "nu", g, state)
        ops = ops_for(inplace)
        nu = ema_sq(ops, list(state.nu), g, alpha)
        return ops.div(g, rsqrt_denominator(ops, nu, eps)), ScaleByRmsState(nu=tuple(nu))

    return LeafwiseTransformation(Leafwise(init, update))


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
            mu=tuple(torch.zeros_like(x) for x in leaves), nu=_full_like(leaves, initial_scale)
        )

    def update(
        g: list[Tensor], state: ScaleByRStdDevState, params: Any, inplace: bool
    ) -> tuple[list[Tensor], ScaleByRStdDevState]:
        check_leaf_state("scale_by_stddev", "mu", g, state)
        ops = ops_for(inplace)
        mu = ema(ops, list(state.mu), g, alpha)
        nu = ema_sq(ops, list(state.nu), g, alpha)
        variance = PURE.addcmul(nu, mu, mu, -1.0)
        denom = ops.add_scalar(ops.sqrt(variance), eps)
        return ops.div(g, denom), ScaleByRStdDevState(mu=tuple(mu), nu=tuple(nu))

    return LeafwiseTransformation(Leafwise(init, update))
