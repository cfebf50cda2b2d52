"""Adafactor's relative step size, with decoupled weight decay scaled by the learning rate."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type
from torchopt_lite.typing import ScalarOrSchedule


@register_state_type
class ScaleByRelativeStepState(NamedTuple):
    """State of :func:`scale_by_relative_step`: the step count ``t``."""

    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_relative_step(
    lr: ScalarOrSchedule = 1e-2, eps: float = 1e-3, weight_decay: float = 0.0
) -> LeafwiseTransformation:
    r"""Scale by Adafactor's relative step and add decoupled decay (see :func:`adafactor`).

    .. math::
        \rho_t = \min(\gamma, 1/\sqrt{t}), \quad
        u_t \leftarrow \rho_t \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\, u_t
        + \gamma \lambda \theta_{t-1}

    ``lr`` (:math:`\gamma`) is a float, a 0-d tensor or a schedule of the count before the
    increment. :math:`\mathrm{RMS}` is per leaf. Needs ``params``.
    """
    check_nonnegative("scale_by_relative_step", "lr", lr, what="learning rate")
    check_nonnegative("scale_by_relative_step", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_relative_step", "weight_decay", weight_decay)

    def init(leaves: Any) -> ScaleByRelativeStepState:
        return ScaleByRelativeStepState(count=zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByRelativeStepState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByRelativeStepState]:
        gamma = lr(state.count) if callable(lr) else lr
        count = next_count(state.count, ops.inplace)
        dtype = coefficient_dtype(count.device)
        rho = torch.minimum(
            torch.as_tensor(gamma, dtype=dtype, device=count.device), count.to(dtype).rsqrt()
        )
        rms = [
            n / math.sqrt(max(p.numel(), 1))
            for n, p in zip(ops.norms(params, 2), params, strict=True)
        ]
        step = [(r.clamp(min=eps) * rho).to(x.dtype) for r, x in zip(rms, g, strict=True)]
        u = ops.mul(g, step)
        if not _kinds.is_zero(weight_decay):
            u = ops.add(u, ops.fresh.mul(list(params), gamma * weight_decay))
        return u, ScaleByRelativeStepState(count=count)

    check = state_check("scale_by_relative_step", ScaleByRelativeStepState)
    return LeafwiseTransformation(
        Leafwise(init, update, check=check, needs_params="scale_by_relative_step")
    )
