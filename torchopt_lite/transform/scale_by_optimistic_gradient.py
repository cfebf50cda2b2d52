"""Optimistic gradients: the current gradient extrapolated along its last change."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByOptimisticGradientState(NamedTuple):
    """State of :func:`scale_by_optimistic_gradient`: the previous updates and the step count."""

    prev: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_optimistic_gradient(
    alpha: float | Tensor = 1.0, beta: float | Tensor = 1.0
) -> LeafwiseTransformation:
    r"""Generalized optimistic gradient (see :func:`torchopt_lite.optimistic_gradient_descent`).

    .. math::
        u_t = (\alpha + \beta)\, g_t - \beta\, g_{t-1}, \qquad g_0 := g_1

    (at the first step there is no previous gradient and :math:`u_1 = \alpha g_1`, as in Optax).
    ``alpha`` and ``beta`` may be 0-d tensors (learnable hyperparameters).
    """
    check_nonnegative("scale_by_optimistic_gradient", "alpha", alpha)
    check_nonnegative("scale_by_optimistic_gradient", "beta", beta)

    def init(leaves: Any) -> ScaleByOptimisticGradientState:
        return ScaleByOptimisticGradientState(
            prev=zeros_like_leaves(leaves), count=zero_count(leaves)
        )

    def update(
        g: list[Tensor], state: ScaleByOptimisticGradientState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByOptimisticGradientState]:
        later = (state.count > 0).to(coefficient_dtype(state.count.device))  # 0 at step 1
        old = ops.fresh.mul(list(state.prev), beta * later)  # beta g_{t-1}, 0 at step 1
        prev = ops.copy(list(state.prev), g)
        u = ops.mul(g, alpha + beta * later)  # in place, g itself is no longer needed
        u = ops.add(u, old, alpha=-1.0)
        count = next_count(state.count, ops.inplace)
        return u, ScaleByOptimisticGradientState(prev=tuple(prev), count=count)

    check = state_check("scale_by_optimistic_gradient", ScaleByOptimisticGradientState, "prev")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
