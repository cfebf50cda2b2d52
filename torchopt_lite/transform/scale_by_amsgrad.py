"""AMSGrad's rescaling: Adam with the running maximum of the second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    adam_moments,
    bias_correction,
    next_count,
    rsqrt_denominator,
    zero_moments,
    zeros_like_leaves,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByAMSGradState(NamedTuple):
    """State of :func:`scale_by_amsgrad`: moments ``mu``, ``nu``, the maximum ``nu_max``, count."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    nu_max: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    bias_corrected_max: bool = False,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by AMSGrad's moments (see :func:`torchopt_lite.amsgrad`).

    .. math::
        \tilde v_t = \max(\tilde v_{t-1}, v_t), \quad
        \Delta_t = \hat m_t / (\sqrt{\tilde v_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon)

    With ``bias_corrected_max=True`` (Optax's form) the maximum is taken over
    :math:`\hat v_t = v_t / (1-\beta_2^t)` instead: :math:`\tilde v_t = \max(\tilde v_{t-1},
    \hat v_t)`, :math:`\Delta_t = \hat m_t / (\sqrt{\tilde v_t + \bar\epsilon} + \epsilon)`.
    """
    check_in_range("scale_by_amsgrad", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_amsgrad", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_amsgrad", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_amsgrad", "eps_root", eps_root, what="epsilon")

    def init(leaves: Any) -> ScaleByAMSGradState:
        mu, nu, count = zero_moments(leaves, moment_requires_grad)
        return ScaleByAMSGradState(mu, nu, zeros_like_leaves(leaves, moment_requires_grad), count)

    def update(
        g: list[Tensor], state: ScaleByAMSGradState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAMSGradState]:
        mu, nu = adam_moments(ops, list(state.mu), list(state.nu), g, b1, b2)
        count = next_count(state.count, ops.inplace)
        bc2 = bias_correction(b2, count)
        if bias_corrected_max:
            nu_max = ops.maximum(list(state.nu_max), ops.fresh.div(nu, bc2))
            denom = rsqrt_denominator(ops, nu_max, eps, eps_root=eps_root)
        else:
            nu_max = ops.maximum(list(state.nu_max), nu)
            denom = rsqrt_denominator(ops, nu_max, eps, bias_correction=bc2, eps_root=eps_root)
        u = ops.mul(ops.div(ops.copy(g, mu), denom), 1.0 / bias_correction(b1, count))
        return u, ScaleByAMSGradState(tuple(mu), tuple(nu), tuple(nu_max), count)

    check = state_check("scale_by_amsgrad", ScaleByAMSGradState, "mu", "nu", "nu_max")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
