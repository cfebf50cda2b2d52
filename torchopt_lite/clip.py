"""Gradient clipping by the global norm."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation

__all__ = ["clip_grad_norm"]


def global_norm(ops: Ops, leaves: list[Tensor], norm_type: float) -> Tensor:
    """The norm of the vector of all leaves (``torch.nn.utils.clip_grad_norm_``'s definition)."""
    return torch.linalg.vector_norm(torch.stack(ops.norms(leaves, norm_type)), norm_type)


def clip_grad_norm(
    max_norm: float | Tensor, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> LeafwiseTransformation:
    r"""Scale all updates so that their global norm is at most ``max_norm``.

    .. math::
        u \leftarrow u \cdot \min\Bigl(1, \frac{c}{\lVert u \rVert_p + 10^{-6}}\Bigr)

    The coefficient stays a tensor: there is no host sync (unless ``error_if_nonfinite``), and
    with ``inplace=False`` the result is differentiable through the norm.

    Args:
        max_norm: the bound :math:`c \ge 0`, a float or a 0-d tensor.
        norm_type: :math:`p` (``float('inf')`` for the max norm).
        error_if_nonfinite: raise ``RuntimeError`` if the norm is NaN or infinite.

    Example:
        >>> t = clip_grad_norm(max_norm=1.0)
        >>> g = torch.tensor([3.0, 4.0])
        >>> t.update(g, t.init(g))[0]
        tensor([0.6000, 0.8000])

    Note:
        TorchOpt computes the coefficient under ``no_grad`` and calls ``float()`` on the norm,
        which syncs with the device and hides the coefficient from autograd.
    """
    check_nonnegative("clip_grad_norm", "max_norm", max_norm)

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        total = global_norm(ops, g, norm_type)
        if error_if_nonfinite and not bool(torch.isfinite(total)):
            raise RuntimeError(
                f"clip_grad_norm: the total norm of order {norm_type} of the updates is "
                "non-finite, so it cannot be clipped. Set error_if_nonfinite=False to skip this "
                "check."
            )
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        return ops.mul(g, coef), state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update))
