"""Lion's rescaling: the sign of an interpolation between the momentum and the gradient."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import ema, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByLionState(NamedTuple):
    """State of :func:`scale_by_lion`: the momentum ``mu`` (one tensor per leaf)."""

    mu: tuple[Tensor, ...]


def scale_by_lion(
    b1: float = 0.9, b2: float = 0.99, *, moment_requires_grad: bool = False
) -> LeafwiseTransformation:
    r"""Rescale updates as Lion does (see :func:`~torchopt_lite.alias.lion.lion`).

    .. math::
        u_t = \operatorname{sign}\bigl(\beta_1 m_{t-1} + (1-\beta_1) g_t\bigr), \quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t
    """
    check_in_range("scale_by_lion", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_lion", "b2", b2, 0.0, 1.0)

    def init(leaves: Any) -> ScaleByLionState:
        return ScaleByLionState(mu=zeros_like_leaves(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleByLionState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByLionState]:
        mu = list(state.mu)
        u = ops.sign(ops.fresh.lerp(mu, g, 1.0 - b1))  # c_t, on a fresh buffer
        mu = ema(ops, mu, g, b2)
        return u, ScaleByLionState(mu=tuple(mu))

    check = state_check("scale_by_lion", ScaleByLionState, "mu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
