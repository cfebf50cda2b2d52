"""An exponential moving average of the updates (Optax's ``ema``)."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import bias_correction, next_count, zero_count, zeros_like_leaves
from torchopt_lite._moments import ema as ema_step
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class EmaState(NamedTuple):
    """State of :func:`ema`: the step count and the average, one tensor per leaf."""

    count: Tensor  # type: ignore[assignment]  # Optax's name; shadows tuple.count
    ema: tuple[Tensor, ...]


def ema(decay: float, debias: bool = True) -> LeafwiseTransformation:
    r"""Replace the updates by their exponential moving average.

    .. math::
        m_t = \beta m_{t-1} + (1 - \beta) u_t, \qquad
        u_t \leftarrow m_t / (1 - \beta^t) \ \text{(debiased)} \ \text{or} \ m_t.

    Args:
        decay: :math:`\beta \in [0, 1)`, a float or a 0-d tensor.
        debias: divide by :math:`1 - \beta^t` (the average of a constant is that constant).

    Returns:
        A transformation whose state is an :class:`EmaState`.

    Example:
        >>> t = ema(0.9)
        >>> u, state = t.update(torch.tensor([2.0]), t.init(torch.zeros(1)))
        >>> u, state.ema
        (tensor([2.]), (tensor([0.2000]),))

    Note:
        Optax's ``trace`` is :math:`\beta m + u` (momentum); ``ema`` weighs the new update by
        :math:`1 - \beta`. Optax's ``accumulator_dtype`` is not offered: the average takes each
        leaf's dtype.
    """
    check_in_range("ema", "decay", decay, 0.0, 1.0)

    def init(leaves: Any) -> EmaState:
        return EmaState(zero_count(leaves), zeros_like_leaves(leaves))

    def update(g: list[Tensor], state: EmaState, params: Any, ops: Ops) -> tuple[Any, EmaState]:
        m = ema_step(ops, list(state.ema), g, decay)
        count = next_count(state.count, ops.inplace)
        u = ops.copy(g, m)  # the update must not share the state's buffers
        if debias:
            u = ops.mul(u, 1.0 / bias_correction(decay, count))
        return u, EmaState(count, tuple(m))

    check = state_check("ema", EmaState, "ema")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
