"""Replace NaN and infinite updates by finite numbers."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation


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

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        return ops.nan_to_num(g, nan, posinf, neginf), state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update))
