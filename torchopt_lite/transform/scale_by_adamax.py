"""AdaMax's rescaling: the infinity-norm variant of Adam."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import bias_correction, ema, next_count, zero_moments
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByAdamaxState(NamedTuple):
    """State of :func:`scale_by_adamax`: first moment ``mu``, infinity norm ``nu``, count."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_adamax(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, moment_requires_grad: bool = False
) -> LeafwiseTransformation:
    r"""Rescale updates by AdaMax's moments (see :func:`adamax`).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
        \Delta_t = m_t / ((1 - \beta_1^t)\, u_t)
    """
    check_in_range("scale_by_adamax", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_adamax", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_adamax", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleByAdamaxState:
        return ScaleByAdamaxState(*zero_moments(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleByAdamaxState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAdamaxState]:
        mu = ema(ops, list(state.mu), g, b1)
        bound = ops.add_scalar(ops.fresh.abs(g), eps)
        nu = ops.maximum(ops.mul(list(state.nu), b2), bound)
        count = next_count(state.count, ops.inplace)
        u = ops.div(ops.copy(g, mu), nu)
        u = ops.mul(u, 1.0 / bias_correction(b1, count))
        return u, ScaleByAdamaxState(mu=tuple(mu), nu=tuple(nu), count=count)

    check = state_check("scale_by_adamax", ScaleByAdamaxState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
