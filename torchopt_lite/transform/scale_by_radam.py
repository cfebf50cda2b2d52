"""RAdam's rescaling: Adam with a variance-rectification term."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    bias_correction,
    ema,
    ema_sq,
    next_count,
    rsqrt_denominator,
    zero_moments,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByRAdamState(NamedTuple):
    """State of :func:`scale_by_radam`: moments ``mu``, ``nu`` and the count."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def _rectification(b1: float, b2: float, count: Tensor) -> tuple[Tensor, Tensor]:
    """Coefficients ``(a, c)`` with ``u = a * m / (sqrt(v) + eps) + c * m`` (branch-free)."""
    t = count.to(torch.float64)
    bc1, bc2 = bias_correction(b1, count), bias_correction(b2, count)
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho = rho_inf - 2.0 * t * torch.pow(b2, t) / bc2
    rectified = rho > 5.0
    ratio = (rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)
    rect = torch.sqrt(torch.where(rectified, ratio, torch.ones_like(ratio)))
    zero = torch.zeros_like(rect)
    adaptive = torch.where(rectified, rect * torch.sqrt(bc2) / bc1, zero)
    plain = torch.where(rectified, zero, 1.0 / bc1)
    return adaptive, plain


def scale_by_radam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, moment_requires_grad: bool = False
) -> LeafwiseTransformation:
    r"""Rescale updates as RAdam does (see :func:`radam`).

    .. math::
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},\quad
        u_t = \begin{cases}
            r_t \sqrt{1-\beta_2^t}\, \hat m_t / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
            \hat m_t & \text{otherwise}
        \end{cases}
    """
    check_in_range("scale_by_radam", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_radam", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_radam", "eps", eps, what="epsilon")

    def init(leaves: Any) -> ScaleByRAdamState:
        return ScaleByRAdamState(*zero_moments(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleByRAdamState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByRAdamState]:
        mu = ema(ops, list(state.mu), g, b1)
        nu = ema_sq(ops, list(state.nu), g, b2)
        count = next_count(state.count, ops.inplace)
        adaptive, plain = _rectification(b1, b2, count)
        u = ops.mul(ops.div(ops.copy(g, mu), rsqrt_denominator(ops, nu, eps)), adaptive)
        u = ops.add(u, ops.fresh.mul(mu, plain))
        return u, ScaleByRAdamState(mu=tuple(mu), nu=tuple(nu), count=count)

    check = state_check("scale_by_radam", ScaleByRAdamState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
