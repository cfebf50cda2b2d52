"""Yogi's rescaling: Adam whose second moment moves additively, by the sign of the gap."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import (
    check_in_range,
    check_nonnegative,
    check_positive_value,
    coefficient,
)
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import adam_direction, ema, full_like_leaves, next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByYogiState(NamedTuple):
    """State of :func:`scale_by_yogi`: moments ``mu``, ``nu`` and the count."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_yogi(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
    *,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by Yogi's moments (see :func:`torchopt_lite.yogi`).

    .. math::
        v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2, \quad
        \Delta_t = \hat m_t / (\sqrt{\hat v_t + \bar\epsilon} + \epsilon)
    """
    check_in_range("scale_by_yogi", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_yogi", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_yogi", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_yogi", "eps_root", eps_root, what="epsilon")
    check_positive_value("scale_by_yogi", "initial_accumulator_value", initial_accumulator_value)
    v0 = coefficient(initial_accumulator_value)

    def init(leaves: Any) -> ScaleByYogiState:
        def filled() -> tuple[Tensor, ...]:
            values = full_like_leaves(leaves, v0)
            if not moment_requires_grad:  # (requires_grad_ is refused under torch.func)
                return values
            return tuple(x.requires_grad_() for x in values)

        return ScaleByYogiState(filled(), filled(), zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByYogiState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByYogiState]:
        mu = ema(ops, list(state.mu), g, b1)
        g2 = ops.fresh.mul(g, g)
        direction = ops.sign(ops.fresh.add(list(state.nu), g2, alpha=-1.0))  # sign(v - g^2)
        nu = ops.addcmul(list(state.nu), direction, g2, -(1.0 - b2))
        count = next_count(state.count, ops.inplace)
        u = adam_direction(ops, g, mu, nu, count, b1, b2, eps, eps_root)
        return u, ScaleByYogiState(mu=tuple(mu), nu=tuple(nu), count=count)

    check = state_check("scale_by_yogi", ScaleByYogiState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
