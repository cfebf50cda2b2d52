"""Shared math over lists of leaves, written once for both modes (``ops``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from torchopt_lite._leaves import zeros_like_leaves
from torchopt_lite.transform._ops import PURE, Leaves, Ops, Seq


def zero_count(leaves: Sequence[Tensor]) -> Tensor:
    """A 0-d int64 step counter on the leaves' device."""
    device = leaves[0].device if leaves else None
    return torch.zeros((), dtype=torch.int64, device=device)


def zero_moments(
    leaves: Sequence[Tensor], requires_grad: bool = False
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]:
    """``(mu, nu, count)`` for Adam-like state: two zero moments per leaf and a zero count."""
    return (
        zeros_like_leaves(leaves, requires_grad),
        zeros_like_leaves(leaves, requires_grad),
        zero_count(leaves),
    )


def next_count(count: Tensor, inplace: bool) -> Tensor:
    """``t <- t + 1`` (in place when allowed)."""
    return count.add_(1) if inplace else count + 1


def bias_correction(decay: float, count: Tensor) -> Tensor:
    r""":math:`1 - \beta^t` as a float64 0-d tensor (no host sync)."""
    return 1.0 - torch.pow(decay, count.to(torch.float64))


def ema(ops: Ops, m: Leaves, g: Seq, decay: float) -> Leaves:
    r""":math:`m \leftarrow \beta m + (1 - \beta) g`."""
    return ops.lerp(m, g, 1.0 - decay)


def ema_sq(ops: Ops, v: Leaves, g: Seq, decay: float) -> Leaves:
    r""":math:`v \leftarrow \beta v + (1 - \beta) g^2`."""
    return ops.addcmul(ops.mul(v, decay), g, g, 1.0 - decay)


def rsqrt_denominator(
    ops: Ops,
    v: Seq,
    eps: float,
    *,
    scale: Tensor | float | None = None,
    eps_root: float = 0.0,
) -> Leaves:
    r""":math:`\sqrt{s\,v + \bar\epsilon} + \epsilon` on fresh buffers (never overwrites ``v``)."""
    if scale is not None:
        d = PURE.mul(v, scale)
        d = ops.sqrt(ops.add_scalar(d, eps_root) if eps_root else d)
    elif eps_root:
        d = ops.sqrt(PURE.add_scalar(v, eps_root))
    else:
        d = PURE.sqrt(v)
    return ops.add_scalar(d, eps)
