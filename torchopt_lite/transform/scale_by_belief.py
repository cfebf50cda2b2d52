"""AdaBelief's rescaling: Adam with the second moment of the prediction error ``g - m``."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import adam_direction, ema, ema_sq, next_count, zero_moments
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByBeliefState(NamedTuple):
    """State of :func:`scale_by_belief`: first moment ``mu``, belief ``nu`` (:math:`s_t`), count."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by AdaBelief's moments (see :func:`torchopt_lite.adabelief`).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        s_t = \beta_2 s_{t-1} + (1-\beta_2) (g_t - m_t)^2 + \bar\epsilon, \quad
        \Delta_t = \hat m_t / (\sqrt{\hat s_t} + \epsilon)
    """
    check_in_range("scale_by_belief", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_belief", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_belief", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_belief", "eps_root", eps_root, what="epsilon")

    def init(leaves: Any) -> ScaleByBeliefState:
        return ScaleByBeliefState(*zero_moments(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleByBeliefState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByBeliefState]:
        mu = ema(ops, list(state.mu), g, b1)
        surprise = ops.fresh.add(g, mu, alpha=-1.0)  # the prediction error g_t - m_t
        nu = ops.add_scalar(ema_sq(ops, list(state.nu), surprise, b2), eps_root)
        count = next_count(state.count, ops.inplace)
        u = adam_direction(ops, g, mu, nu, count, b1, b2, eps, eps_root=0.0)
        return u, ScaleByBeliefState(mu=tuple(mu), nu=tuple(nu), count=count)

    check = state_check("scale_by_belief", ScaleByBeliefState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
