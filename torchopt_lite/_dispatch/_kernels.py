"""torch's fused optimizer kernels, called only on inputs they compute correctly.

``torch._fused_adam_``, ``_fused_adamw_`` and ``_fused_sgd_`` walk each tensor as dense memory
(on CPU a strided view or a stride-0 gradient is read wrongly, silently), take one dtype per
call, and on CPU round float16/bfloat16 differently from ``torch.optim``'s default path. So a
call is made only when every tensor is contiguous, float32 or float64, on a device torch has the
kernel for, and outside ``torch.compile`` and ``torch.func`` transforms; otherwise the caller
gets ``None``/``False`` before anything is read or written, and runs the multi-tensor formula.

A kernel updates parameters. To produce *updates* (the functional in-place API, where ``g`` is
overwritten by ``u``), it runs on zeroed scratch "parameters", ``u = 0 - lr * step``, chunk by
chunk, and each chunk is copied into ``g``: the scratch stays small (at most ``SCRATCH`` elements)
and in cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _get_fused_kernels_supported_devices

from torchopt_lite._dispatch._boundary import each
from torchopt_lite._ops import FOREACH_INPLACE

KERNEL_DTYPES = (torch.float32, torch.float64)
SCRATCH = 1 << 17  # elements of scratch per chunk of the update mode
_SMALL = 1 << 14  # leaves below this many elements get their own zeroed buffer (no slicing)
_DEVICES = frozenset(_get_fused_kernels_supported_devices())

Lists = list[list[Tensor]]


def kernel_groups(lists: Lists) -> list[Lists] | None:
    """``lists`` split by (device, dtype) for a fused kernel, or ``None`` if it cannot take them.

    ``lists[k][i]`` is the ``k``-th tensor of leaf ``i``; a leaf's tensors must share shape,
    dtype and device (the boundary has checked the state; parameters are checked here).
    """
    first = lists[0]
    if (
        not first
        or torch.compiler.is_compiling()
        or torch._C._functorch.maybe_current_level() is not None
        or not all(all(each("is_contiguous", xs)) for xs in lists)
    ):
        return None
    dtypes = each("dtype", first)
    if any(each("dtype", xs) != dtypes for xs in lists[1:]):
        return None
    if len(set(dtypes)) == 1 and all(all(each("is_cpu", xs)) for xs in lists):
        return [lists] if dtypes[0] in KERNEL_DTYPES and "cpu" in _DEVICES else None
    grouped = torch._C._group_tensors_by_device_and_dtype(lists, False)  # type: ignore[arg-type]
    out: list[Lists] = []
    for (device, dtype), (group, _) in grouped.items():
        if dtype not in KERNEL_DTYPES or device.type not in _DEVICES:
            return None
        out.append([[x for x in xs if x is not None] for xs in group])
    if sum(len(group[0]) for group in out) != len(first):  # a leaf's tensors on two devices
        return None
    return out


def _steps(count: Tensor, like: Tensor, n: int) -> list[Tensor]:
    """The kernels' per-tensor step counts: ``count`` as float32 on the tensors' device."""
    step = count.to(device=like.device, dtype=torch.float32)
    return [step] * n


def _pieces(lists: Lists) -> Iterator[Lists]:
    """Chunks of at most ``SCRATCH`` elements; a larger leaf is cut into flat slices."""
    start = size = 0
    for i, numel in enumerate(map(Tensor.numel, lists[0])):
        if numel > SCRATCH:
            if i > start:
                yield [xs[start:i] for xs in lists]
            flat = [xs[i].view(-1) for xs in lists]
            for a in range(0, numel, SCRATCH):
                yield [[f[a : a + SCRATCH]] for f in flat]
            start, size = i + 1, 0
            continue
        if size + numel > SCRATCH and i > start:
            yield [xs[start:i] for xs in lists]
            start, size = i, 0
        size += numel
    if start < len(lists[0]):
        yield [xs[start:] for xs in lists]


def through_scratch(lists: Lists, kernel: Callable[[list[Tensor], Lists], None]) -> None:
    """Run ``kernel(u, chunk)`` chunk by chunk on zeroed ``u``, then ``chunk[0] <- u``.

    Small leaves get their own zeroed buffers (a heap allocation); larger ones views of one
    scratch buffer, allocated once (fresh mappings would fault in every page each time).
    """
    scratch = lists[0][0].new_empty(min(SCRATCH, sum(map(Tensor.numel, lists[0]))))
    for piece in _pieces(lists):
        u: list[Tensor] = []
        offset = 0
        for x in piece[0]:
            numel = x.numel()
            if numel < _SMALL:
                u.append(torch.zeros_like(x))
            else:
                u.append(scratch[offset : offset + numel].view_as(x).zero_())
                offset += numel
        kernel(u, piece)
        torch._foreach_copy_(piece[0], u)


def adam_kernel(
    groups: list[Lists],
    count: Tensor,
    *,
    apply: bool,
    lr: float,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> None:
    """One fused Adam(W) step over ``kernel_groups`` (``count`` already incremented).

    ``apply``: the groups are ``[params, g, mu, nu]`` and the parameters are updated, the
    gradients only read, as ``torch.optim.Adam(fused=True)``. Otherwise they are ``[g, mu, nu]``
    and ``g`` is overwritten by the update ``u`` (weight decay must already be in ``g``).
    """
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_

    def call(params: list[Tensor], rest: Lists, steps: list[Tensor], decay: float) -> None:
        g, mu, nu = rest
        kernel(
            params, g, mu, nu, [], steps[: len(params)], lr=lr, beta1=b1, beta2=b2,
            weight_decay=decay, eps=eps, amsgrad=False, maximize=maximize,
        )  # fmt: skip

    for group in groups:
        steps = _steps(count, group[0][0], len(group[0]))
        if apply:
            call(group[0], group[1:], steps, weight_decay)
        else:
            through_scratch(group, functools.partial(call, steps=steps, decay=0.0))


def sgd_kernel(
    groups: list[Lists],
    first: bool,
    *,
    apply: bool,
    with_buffers: bool,
    lr: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One fused SGD step over ``kernel_groups`` of ``[params,] g[, buffers]`` (see above).

    ``first`` marks the first step: the momentum buffer starts as the undamped gradient.
    """

    def call(params: list[Tensor], rest: Lists, decay: float) -> None:
        torch._fused_sgd_(
            params, rest[0], rest[1] if with_buffers else [], weight_decay=decay,
            momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov, maximize=maximize,
            is_first_step=first,
        )  # fmt: skip

    for group in groups:
        if apply:
            call(group[0], group[1:], weight_decay)
        else:
            through_scratch(group, functools.partial(call, decay=0.0))


def fused_adam_update(
    g: list[Tensor],
    mu: list[Tensor],
    nu: list[Tensor],
    count: Tensor,
    lr: Any,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]] | None:
    """Out of place ``(u, m', v')`` (``count`` already incremented) by one kernel pass, or ``None``.

    The kernel updates copies of the moments and writes ``0 - lr * step`` into zeroed update
    buffers, reading ``g`` only; a tensor ``lr`` scales the result afterwards.
    """
    if eps_root != 0.0 or kernel_groups([g, mu, nu]) is None:
        return None
    u = [torch.zeros_like(x) for x in g]
    mu_new = [x.clone() for x in mu]
    nu_new = [x.clone() for x in nu]
    unit = 1.0 if isinstance(lr, Tensor) else float(lr)
    groups = kernel_groups([u, g, mu_new, nu_new]) or []
    adam_kernel(
        groups, count, apply=True, lr=unit, b1=b1, b2=b2, eps=eps, weight_decay=0.0,
        decoupled=False, maximize=False,
    )  # fmt: skip
    if isinstance(lr, Tensor):
        FOREACH_INPLACE.mul(u, lr.detach())
    return u, mu_new, nu_new
