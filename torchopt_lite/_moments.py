"""Shared math over lists of leaves, written once for every rendering (``ops``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from torchopt_lite._kinds import is_zero
from torchopt_lite._ops import Leaves, Ops, Seq


def zeros_like_leaves(leaves: Sequence[Tensor], requires_grad: bool = False) -> tuple[Tensor, ...]:
    """Zeros shaped (and strided, where dense) like each leaf: a per-leaf state field."""
    return tuple(torch.zeros_like(x, requires_grad=requires_grad) for x in leaves)


def full_like_leaves(leaves: Sequence[Tensor], value: float) -> tuple[Tensor, ...]:
    """``value`` in every (real) component, shaped like each leaf.

    A complex leaf is optimized through its real view, so both its components start at
    ``value``, as ``torch.optim.Adagrad``'s accumulator does.
    """
    if isinstance(value, Tensor):  # injected or learnable: zeros plus value, differentiably
        return tuple(
            torch.zeros_like(x) + (torch.complex(value, value) if x.is_complex() else value)
            for x in leaves
        )
    return tuple(
        torch.full_like(x, complex(value, value) if x.is_complex() else value) for x in leaves
    )


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


def coefficient_dtype(device: torch.device) -> torch.dtype:
    """float64 for step-count coefficients, where the device has it (MPS has not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def bias_correction(decay: float, count: Tensor) -> Tensor:
    r""":math:`1 - \beta^t` as a 0-d float64 tensor on the count's device (no host sync)."""
    return 1.0 - torch.pow(decay, count.to(coefficient_dtype(count.device)))


def ema(ops: Ops, m: Leaves, g: Seq, decay: float) -> Leaves:
    r""":math:`m \leftarrow \beta m + (1 - \beta) g`."""
    return ops.lerp(m, g, 1.0 - decay)


def ema_sq(ops: Ops, v: Leaves, g: Seq, decay: float) -> Leaves:
    r""":math:`v \leftarrow \beta v + (1 - \beta) g^2`."""
    return ops.addcmul(ops.mul(v, decay), g, g, 1.0 - decay)


def rsqrt_denominator(
    ops: Ops, v: Seq, eps: float, *, bias_correction: Tensor | None = None, eps_root: float = 0.0
) -> Leaves:
    r""":math:`\sqrt{v / b + \bar\epsilon} + \epsilon` on fresh buffers (never overwrites ``v``).

    Computed as :math:`\sqrt{v + \bar\epsilon b} / \sqrt{b} + \epsilon`, in ``torch.optim``'s
    order (no overflow of :math:`v / b` in low precision); :math:`b = 1` when not given.
    """
    b = bias_correction
    if not is_zero(eps_root):
        d = ops.sqrt(ops.fresh.add_scalar(list(v), eps_root if b is None else eps_root * b))
    else:
        d = ops.fresh.sqrt(list(v))
    if b is not None:
        d = ops.div(d, torch.sqrt(b))
    return ops.add_scalar(d, eps)


def adam_moments(
    ops: Ops, mu: Leaves, nu: Leaves, g: Seq, b1: float, b2: float
) -> tuple[Leaves, Leaves]:
    r"""Adam's moments: :math:`m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t`,
    :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2`."""
    return ema(ops, mu, g, b1), ema_sq(ops, nu, g, b2)


def adam_coefficients(count: Tensor, lr: Any, b1: float, b2: float) -> tuple[Any, Tensor]:
    r""":math:`a = \alpha / (1 - \beta_1^t)` and :math:`c = 1 / (1 - \beta_2^t)` for step ``t``."""
    return lr / bias_correction(b1, count), 1.0 / bias_correction(b2, count)


def adam_direction(
    ops: Ops,
    out: Leaves,
    mu: Leaves,
    nu: Leaves,
    count: Tensor,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
    lr: Any = 1.0,
) -> Leaves:
    r""":math:`\alpha\,\hat m / (\sqrt{\hat v + \bar\epsilon} + \epsilon)`, into ``out`` in place.

    ``count`` is the step :math:`t` already incremented; ``lr`` scales the result (an Adam step
    passes :math:`-\alpha`).
    """
    denom = rsqrt_denominator(
        ops, nu, eps, bias_correction=bias_correction(b2, count), eps_root=eps_root
    )
    return ops.mul(ops.div(ops.copy(out, mu), denom), lr / bias_correction(b1, count))
