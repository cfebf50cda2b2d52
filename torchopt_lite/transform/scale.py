"""Scaling by a constant or by a schedule of the step count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule`: the step count ``t``."""

    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale(step_size: float | Tensor) -> LeafwiseTransformation:
    r"""Multiply updates by a constant: :math:`u \leftarrow \alpha u`.

    ``step_size`` may be a 0-d tensor that requires grad (a learnable hyperparameter); the
    out-of-place update is then differentiable with respect to it.

    Example:
        >>> t = scale(0.5)
        >>> t.update(torch.ones(2), t.init(torch.ones(2)))[0]
        tensor([0.5000, 0.5000])
    """

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        return ops.mul(g, step_size), state

    kind = _kinds.Scale(float(step_size) if isinstance(step_size, int | float) else step_size)
    return LeafwiseTransformation(
        Leafwise(lambda leaves: EmptyState(), update, kind=kind, sparse=True)
    )


def scale_by_schedule(step_size_fn: Callable[[Tensor], Any]) -> LeafwiseTransformation:
    r"""Multiply updates by a schedule of the step count: :math:`u_t \leftarrow \alpha(t) u_t`.

    ``step_size_fn`` receives the count before the increment (0 at the first step), as in
    TorchOpt and Optax, and may return a float or a tensor.
    """

    def init(leaves: Any) -> ScaleByScheduleState:
        return ScaleByScheduleState(count=zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByScheduleState, params: Any, ops: Ops
    ) -> tuple[Any, ScaleByScheduleState]:
        step_size = step_size_fn(state.count)
        updates = ops.mul(g, step_size)
        return updates, ScaleByScheduleState(count=next_count(state.count, ops.inplace))

    check = state_check("scale_by_schedule", ScaleByScheduleState)
    return LeafwiseTransformation(Leafwise(init, update, check=check, sparse=True))
