"""Gradient hooks registered on updates (for the graph built by out-of-place steps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation

__all__ = ["register_hook", "zero_nan_hook", "nan_to_num_hook"]


def zero_nan_hook(g: Tensor) -> Tensor:
    """A tensor hook that replaces NaN gradients by zero.

    Example:
        >>> zero_nan_hook(torch.tensor([float("nan"), 2.0]))
        tensor([0., 2.])
    """
    return g.nan_to_num(nan=0.0)


def nan_to_num_hook(
    nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> Callable[[Tensor], Tensor]:
    """Return a tensor hook applying ``torch.nan_to_num`` to gradients."""

    def hook(g: Tensor) -> Tensor:
        return g.nan_to_num(nan=nan, posinf=posinf, neginf=neginf)

    return hook


def register_hook(hook: Callable[[Tensor], Tensor | None]) -> LeafwiseTransformation:
    """A stateless transformation that registers ``hook`` on every update that requires grad.

    The hook then acts on the gradients that flow back through the updates in a meta-gradient
    computation (for example ``zero_nan_hook`` guards the outer loop against NaNs).

    Example:
        >>> t = register_hook(zero_nan_hook)
    """

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        for x in g:  # Tensor.register_hook has no multi-tensor form
            if x.requires_grad:
                x.register_hook(hook)
        return g, state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update))
