"""Polyak's step size: the suboptimality gap over the squared gradient norm."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation

VARIANTS = ("sps", "sps+")


def scale_by_polyak(
    f_min: float | Tensor = 0.0,
    max_lr: float | Tensor = 1.0,
    eps: float | Tensor = 0.0,
    variant: str = "sps",
) -> LeafwiseTransformation:
    r"""Scale the updates by the (stochastic) Polyak step size (see :func:`polyak_sgd`).

    .. math::
        \gamma = \min\Bigl(\frac{f(\theta) - f^\star}{\lVert g \rVert^2 + \epsilon},
        \gamma_{\max}\Bigr), \qquad u = \gamma g

    with :math:`\gamma = 0` where :math:`\lVert g \rVert^2 + \epsilon` is below the float64
    machine epsilon. ``update`` needs the objective ``value=`` :math:`f(\theta)`; ``"sps+"``
    uses :math:`\max(f(\theta) - f^\star, 0)`.
    """
    check_nonnegative("scale_by_polyak", "max_lr", max_lr, what="learning rate")
    check_nonnegative("scale_by_polyak", "eps", eps, what="epsilon")
    if variant not in VARIANTS:
        raise ValueError(f"scale_by_polyak: variant must be 'sps' or 'sps+'; got {variant!r}.")
    tiny = torch.finfo(torch.float64).eps

    def update(
        g: list[Tensor], state: Any, params: Any, ops: Ops, *, value: Any
    ) -> tuple[list[Tensor], Any]:
        if not g:
            return g, state
        dtype = functools.reduce(torch.promote_types, [x.dtype for x in g])
        norm_sq = (torch.stack([n.to(dtype) for n in ops.norms(g, 2.0)]) ** 2).sum()
        gap = _as(value, norm_sq) - f_min
        if variant == "sps+":
            gap = torch.clamp(gap, min=0.0)
        denom = norm_sq + eps
        safe = torch.where(denom <= tiny, torch.ones_like(denom), denom)
        step = torch.where(
            denom <= tiny, torch.zeros_like(denom), torch.clamp(gap / safe, max=max_lr)
        )
        return ops.mul(g, step), state

    return LeafwiseTransformation(
        Leafwise(lambda leaves: EmptyState(), update, extra_args=("value",))
    )


def _as(value: Any, like: Tensor) -> Tensor:
    """The loss as a tensor in ``like``'s dtype (a Python float is not rounded to float32)."""
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=like.dtype)
    return torch.tensor(value, dtype=like.dtype, device=like.device)
