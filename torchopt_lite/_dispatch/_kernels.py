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

from torchopt_lite._dispatch._boundary import Facts, each
from torchopt_lite._ops import FOREACH_INPLACE

KERNEL_DTYPES = (torch.float32, torch.float64)
SCRATCH = 1 << 18  # elements of scratch per chunk of the update mode
_DEVICES = frozenset(_get_fused_kernels_supported_devices())

Lists = list[list[Tensor]]


def kernel_groups(lists: Lists, facts: Facts) -> list[Lists] | None:
    """``lists`` split by (device, dtype) for a fused kernel, or ``None`` if it cannot take them.

    ``lists[k][i]`` is the ``k``-th tensor of leaf ``i``. ``facts`` describe the gradients, one
    of the lists; the others match them in shape, dtype and device (the boundary has checked the
    state, and torch keeps a parameter's ``.grad`` like the parameter).
    """
    if (
        not lists[0]
        or torch.compiler.is_compiling()
        or torch._C._functorch.maybe_current_level() is not None
        or not facts.dense
        or not all(xs is facts.leaves or all(each("is_contiguous", xs)) for xs in lists)
    ):
        return None
    dtypes = facts.dtypes
    if facts.on_cpu and len(set(dtypes)) == 1:
        return [lists] if dtypes[0] in KERNEL_DTYPES and "cpu" in _DEVICES else None
    grouped = torch._C._group_tensors_by_device_and_dtype(lists, False)  # type: ignore[arg-type]
    out: list[Lists] = []
    for (device, dtype), (group, _) in grouped.items():
        if dtype not in KERNEL_DTYPES or device.type not in _DEVICES:
            return None
        out.append([[x for x in xs if x is not None] for xs in group])
    return out


def _steps(count: Tensor, like: Tensor, n: int) -> list[Tensor]:
    """The kernels' per-tensor step counts: ``count`` as float32 on the tensors' device."""
    step = count.to(device=like.device, dtype=torch.float32)
    return [step] * n


def _pieces(lists: Lists, numels: list[int]) -> Iterator[tuple[Lists, list[int]]]:
    """Chunks of at most ``SCRATCH`` elements (and their leaves' sizes); a larger leaf is cut
    into flat slices."""
    start = size = 0
    for i, numel in enumerate(numels):
        if numel > SCRATCH:
            if i > start:
                yield [xs[start:i] for xs in lists], numels[start:i]
            flat = [xs[i].view(-1) for xs in lists]
            for a in range(0, numel, SCRATCH):
                piece = [[f[a : a + SCRATCH]] for f in flat]
                yield piece, [piece[0][0].numel()]
            start, size = i + 1, 0
            continue
        if size + numel > SCRATCH and i > start:
            yield [xs[start:i] for xs in lists], numels[start:i]
            start, size = i, 0
        size += numel
    if start < len(numels):
        yield [xs[start:] for xs in lists], numels[start:]


def through_scratch(
    lists: Lists, numels: list[int], kernel: Callable[[list[Tensor], Lists], None]
) -> None:
    """Run ``kernel(u, chunk)`` chunk by chunk on zeroed ``u``, then ``chunk[0] <- u``.

    ``u`` is one scratch buffer, allocated once, zeroed per chunk with one fill and split into a
    view per leaf (a fresh mapping per chunk would fault in every page each time).
    """
    scratch = lists[0][0].new_empty(min(SCRATCH, sum(numels)))
    for piece, sizes in _pieces(lists, numels):
        flat = scratch[: sum(sizes)]
        flat.zero_()
        u = list(flat.split_with_sizes(sizes))
        if any(d != 1 for d in each("dim", piece[0])):
            u = [y.view(x.shape) for x, y in zip(piece[0], u, strict=True)]
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
            numels = each("numel", group[0])
            through_scratch(group, numels, functools.partial(call, steps=steps, decay=0.0))


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
            numels = each("numel", group[0])
            through_scratch(group, numels, functools.partial(call, decay=0.0))


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
    facts = Facts.of(g)
    if eps_root != 0.0 or kernel_groups([g, mu, nu], facts) is None:
        return None
    u = [torch.zeros_like(x) for x in g]
    mu_new = [x.clone() for x in mu]
    nu_new = [x.clone() for x in nu]
    unit = 1.0 if isinstance(lr, Tensor) else float(lr)
    groups = kernel_groups([u, g, mu_new, nu_new], facts) or []
    adam_kernel(
        groups, count, apply=True, lr=unit, b1=b1, b2=b2, eps=eps, weight_decay=0.0,
        decoupled=False, maximize=False,
    )  # fmt: skip
    if isinstance(lr, Tensor):
        FOREACH_INPLACE.mul(u, lr.detach())
    return u, mu_new, nu_new
