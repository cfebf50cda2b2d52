"""Updates divided by their global norm."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation
from torchopt_lite.clip import global_norm


def normalize_by_update_norm(
    scale_factor: float | Tensor = 1.0, eps: float = 1e-6
) -> LeafwiseTransformation:
    r"""Divide the updates by their global Euclidean norm (plus ``eps``), times ``scale_factor``.

    .. math::
        u \leftarrow u \,/\, \bigl((\lVert u \rVert_2 + \epsilon) / s\bigr)

    The norm is over all leaves together (complex leaves count :math:`|z|^2`); it stays a tensor
    (no host sync) and is differentiated through with ``inplace=False``.

    Args:
        scale_factor: :math:`s`, a float or a 0-d tensor; the norm of the result is about
            :math:`|s|` (``-1.0`` makes it a normalized descent direction).
        eps: :math:`\epsilon \ge 0`, guards the division for zero updates.

    Example:
        >>> t = normalize_by_update_norm(eps=0.0)
        >>> g = torch.tensor([3.0, 4.0])
        >>> t.update(g, t.init(g))[0]
        tensor([0.6000, 0.8000])

    Note:
        Optax's ``normalize_by_update_norm``.
    """
    check_nonnegative("normalize_by_update_norm", "eps", eps, what="epsilon")

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        denom = (global_norm(ops, g, 2.0) + eps) / scale_factor
        return ops.div(g, denom), state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update))
