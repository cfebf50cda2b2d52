"""Momentum (heavy-ball and Nesterov) with dampening, as in ``torch.optim.SGD``."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_nonnegative, known_value
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import (
    GradientTransformation,
    LeafwiseTransformation,
    identity,
    register_state_type,
)


@register_state_type
class TraceState(NamedTuple):
    """State of :func:`trace`: the momentum buffer and the step count."""

    trace: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def trace(
    momentum: float = 0.9,
    dampening: float = 0.0,
    nesterov: bool = False,
    moment_requires_grad: bool = False,
) -> GradientTransformation:
    r"""Accumulate a momentum trace of the updates (see :func:`sgd`).

    .. math::
        b_1 = g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t, \qquad
        u_t = \begin{cases} g_t + \mu b_t & \text{nesterov} \\ b_t & \text{otherwise}\end{cases}

    With ``momentum == 0`` this is the identity.

    Note:
        TorchOpt detects the first step with a Python flag held by the transformation, which
        breaks when one transformation serves two states; here the step count lives in the
        state.
    """
    check_nonnegative("trace", "momentum", momentum)
    check_nonnegative("trace", "dampening", dampening)
    # a tensor is checked where it reads for free (a tensor 0.0 dampening is zero dampening)
    if nesterov and (known_value(momentum) == 0.0 or known_value(dampening) not in (0.0, None)):
        raise ValueError("trace: Nesterov momentum requires a momentum and zero dampening.")
    if _kinds.is_zero(momentum):
        return identity()

    def init(leaves: Any) -> TraceState:
        return TraceState(
            trace=zeros_like_leaves(leaves, moment_requires_grad), count=zero_count(leaves)
        )

    def update(
        g: list[Tensor], state: TraceState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], TraceState]:
        buf = list(state.trace)
        if not _kinds.is_zero(dampening):
            # b_1 = g_1 undamped, as torch.optim.SGD: the weight is 1 at step 1
            later = (state.count > 0).to(coefficient_dtype(state.count.device))
            g = ops.mul(g, 1.0 - dampening * later)
        if nesterov:  # u = g + mu b_t, with b_t = mu b + g (b_0 = 0 makes b_1 = g_1)
            buf = ops.add(ops.mul(buf, momentum), g)
            u = ops.add(g, buf, alpha=momentum)
        else:  # u = b_t = g + mu b, written where g was (in place: 3 passes, not 4)
            u = ops.add(g, buf, alpha=momentum)
            buf = ops.copy(buf, u)
        return u, TraceState(trace=tuple(buf), count=next_count(state.count, ops.inplace))

    constant = _kinds.constant(momentum, dampening)
    kind = _kinds.Trace(float(momentum), float(dampening), bool(nesterov)) if constant else None
    check = state_check("trace", TraceState, "trace")
    return LeafwiseTransformation(Leafwise(init, update, kind=kind, check=check, sparse=True))
