"""Averaged SGD (ASGD): a decaying step with a lambd pull to zero, and the iterate average."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type
from torchopt_lite.typing import ScalarOrSchedule


@register_state_type
class ScaleByAsgdState(NamedTuple):
    r"""State of :func:`scale_by_asgd`: the averaged parameters ``ax`` and the step count.

    ``ax`` holds :math:`\bar\theta_t`, one tensor per leaf.
    """

    ax: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_asgd(
    lr: ScalarOrSchedule = 1e-2, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6
) -> LeafwiseTransformation:
    r"""ASGD's whole step, learning rate included (see :func:`~torchopt_lite.alias.asgd.asgd`).

    .. math::
        \eta_t = \frac{\alpha_{lr}}{(1 + \lambda\, \alpha_{lr}\, (t-1))^{a}}, \quad
        u_t = -\eta_t (g_t + \lambda \theta_{t-1}), \quad
        \mu_t = \frac{1}{\max(1, t - 1 - t_0)}, \quad
        \bar\theta_t = \bar\theta_{t-1} + \mu_t (\theta_{t-1} + u_t - \bar\theta_{t-1})

    It reads the parameters. ``lr`` may be a float, a 0-d tensor or a schedule of the count.
    """
    check_nonnegative("scale_by_asgd", "lr", lr, what="learning rate")
    check_nonnegative("scale_by_asgd", "lambd", lambd)
    check_nonnegative("scale_by_asgd", "alpha", alpha)
    check_nonnegative("scale_by_asgd", "t0", t0)

    def init(leaves: Any) -> ScaleByAsgdState:
        return ScaleByAsgdState(ax=zeros_like_leaves(leaves), count=zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByAsgdState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAsgdState]:
        t = state.count.to(coefficient_dtype(state.count.device))  # earlier steps: t - 1 above
        rate = lr(state.count) if callable(lr) else lr
        eta = rate / torch.pow(1.0 + lambd * rate * t, alpha)
        mu = 1.0 / torch.clamp(t - t0, min=1.0)
        u = g if _kinds.is_zero(lambd) else ops.add(g, params, alpha=lambd)
        u = ops.mul(u, -eta)
        step = ops.add(ops.fresh.add(params, u), list(state.ax), alpha=-1.0)  # theta_t - ax
        ax = ops.add(list(state.ax), ops.mul(step, mu))
        count = next_count(state.count, ops.inplace)
        return u, ScaleByAsgdState(ax=tuple(ax), count=count)

    check = state_check("scale_by_asgd", ScaleByAsgdState, "ax")
    return LeafwiseTransformation(Leafwise(init, update, check=check, needs_params="asgd"))
