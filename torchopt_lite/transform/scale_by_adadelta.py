"""AdaDelta's rescaling: a ratio of running RMS of updates and of gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import ema_sq, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByAdadeltaState(NamedTuple):
    """State of :func:`scale_by_adadelta`: running means of squared gradients and updates."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]


def scale_by_adadelta(
    rho: float = 0.9, eps: float = 1e-6, moment_requires_grad: bool = False
) -> LeafwiseTransformation:
    r"""Rescale updates as AdaDelta does (see :func:`adadelta`).

    .. math::
        m_t = \rho m_{t-1} + (1-\rho) g_t^2, \quad
        \Delta_t = \sqrt{(n_{t-1} + \epsilon) / (m_t + \epsilon)}\; g_t, \quad
        n_t = \rho n_{t-1} + (1-\rho) \Delta_t^2
    """
    check_in_range("scale_by_adadelta", "rho", rho, 0.0, 1.0, closed_high=True)
    check_nonnegative("scale_by_adadelta", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleByAdadeltaState:
        return ScaleByAdadeltaState(
            mu=zeros_like_leaves(leaves, moment_requires_grad),
            nu=zeros_like_leaves(leaves, moment_requires_grad),
        )

    def update(
        g: list[Tensor], state: ScaleByAdadeltaState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAdadeltaState]:
        mu = ema_sq(ops, list(state.mu), g, rho)
        ratio = ops.div(ops.fresh.add_scalar(list(state.nu), eps), ops.fresh.add_scalar(mu, eps))
        u = ops.mul(g, ops.sqrt(ratio))
        nu = ema_sq(ops, list(state.nu), u, rho)
        return u, ScaleByAdadeltaState(mu=tuple(mu), nu=tuple(nu))

    check = state_check("scale_by_adadelta", ScaleByAdadeltaState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
