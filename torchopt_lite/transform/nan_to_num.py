"""Replace NaN and infinite updates by finite numbers."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite.base import EmptyState, Leafwise, LeafwiseTransformation


def nan_to_num(
    nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> LeafwiseTransformation:
    """Replace NaN, +inf and -inf in the updates (``torch.nan_to_num`` on every leaf).

    Example:
        >>> t = nan_to_num()
        >>> g = torch.tensor([float("nan"), 1.0])
        >>> t.update(g, t.init(g))[0]
        tensor([0., 1.])
    """

    def update(g: list[Tensor], state: Any, params: Any, inplace: bool) -> tuple[Any, Any]:
        # No multi-tensor nan_to_num exists; one call per leaf.
        if inplace:
            return [x.nan_to_num_(nan, posinf, neginf) for x in g], state
        return [x.nan_to_num(nan, posinf, neginf) for x in g], state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update))
