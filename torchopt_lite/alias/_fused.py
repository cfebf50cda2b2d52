"""Fused Adam for a whole ``adam``/``adamw`` chain: in place, out of place, and on owned params.

In place:
``torch._fused_adamw_`` updates ``param <- param * (1 - lr * wd) - lr * step(grad)``. Passing the
update buffer as both ``param`` and ``grad`` with ``wd = 1 / lr`` zeroes the first term, so the
kernel writes ``-lr * step(g)`` straight into the gradient buffer while updating the moments: the
exact in-place semantics of ``scale_by_adam`` followed by ``scale(-lr)``, in one pass over
``g, m, v`` and with no extra memory. The kernel reads each element before writing it, which
``tests/alias/test_reference.py`` checks against the unfused path for every dtype we dispatch.

Out of place: :class:`~torchopt_lite.alias._adam_function.AdamStep`, one autograd node.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

from torchopt_lite._leaves import check_leaf_state
from torchopt_lite._native import sgd_momentum_kernel
from torchopt_lite.alias._adam_function import AdamConfig, AdamStep, exact_inverse
from torchopt_lite.base import FusedApply, FusedStep, GradientTransformation
from torchopt_lite.transform._ops import PURE, _transformed
from torchopt_lite.transform.scale_by_adam import ScaleByAdamState

_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_IS_CPU = operator.attrgetter("is_cpu")
_DTYPE = operator.attrgetter("dtype")
_REQUIRES_GRAD = operator.attrgetter("requires_grad")


def _uniform(leaves: list[Tensor], *, allow_grad: bool = False) -> bool:
    """One floating dtype and one CPU/CUDA device (and no autograd history, unless allowed)."""
    first = leaves[0]
    dtype, device = first.dtype, first.device
    if dtype not in _FUSED_DTYPES or device.type not in ("cpu", "cuda"):
        return False
    # attribute maps instead of a generator: ~3x faster over 1000 leaves
    same_device = (
        all(map(_IS_CPU, leaves))
        if device.type == "cpu"
        else all(x.device == device for x in leaves)
    )
    return (
        same_device
        and all(d is dtype for d in map(_DTYPE, leaves))
        and (allow_grad or not any(map(_REQUIRES_GRAD, leaves)))
    )


def fused_adam_step(
    parts: tuple[GradientTransformation, ...],
    *,
    lr: Any,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
    decoupled_weight_decay: float = 0.0,
) -> FusedStep | None:
    """The fused step for ``chain(flip, scale_by_adam, [decay,] scale_by_neg_lr)``.

    In place: one ``torch._fused_adamw_`` pass (a float learning rate and ``eps_root=0``).
    Out of place: :class:`AdamStep`, one autograd node with a closed-form backward (a float or
    0-d tensor learning rate). Returns ``None`` when neither applies (a schedule ``lr``).
    """
    if callable(lr):
        return None
    flip = parts[0].leafwise()
    if flip is None:
        return None
    wd = None
    if isinstance(lr, int | float) and lr > 0 and eps_root == 0.0:
        wd = exact_inverse(float(lr))
    cfg_fields = (b1, b2, eps, eps_root)

    def step(
        leaves: list[Tensor], state: Any, params: list[Tensor] | None, inplace: bool
    ) -> tuple[list[Tensor], Any] | None:
        adam_state = state[1]
        if not isinstance(adam_state, ScaleByAdamState) or not leaves:
            return None
        check_leaf_state("adam", "mu", leaves, adam_state)
        if decoupled_weight_decay and params is None:
            return None  # the unfused path raises its error message
        if not _uniform(leaves, allow_grad=not inplace) or _transformed(leaves, adam_state.mu):
            return None
        if inplace:
            # The aliasing (param slot = grad slot) is verified by the tests on CPU only; other
            # devices run the transforms until it is checked there too.
            if wd is None or adam_state.mu[0].requires_grad or leaves[0].device.type != "cpu":
                return None
            g, flip_state = flip.update(leaves, state[0], params, True)
            mu, nu = list(adam_state.mu), list(adam_state.nu)
            count = adam_state.count.add_(1)
            torch._fused_adamw_(
                g, g, mu, nu, [], [count] * len(g),
                lr=float(lr), beta1=b1, beta2=b2, weight_decay=wd, eps=eps,
                amsgrad=False, maximize=False,
            )  # fmt: skip
            if decoupled_weight_decay and params is not None:
                torch._foreach_add_(g, params, alpha=-float(lr) * decoupled_weight_decay)
            new_adam = ScaleByAdamState(tuple(mu), tuple(nu), count)
        else:
            g, flip_state = flip.update(leaves, state[0], params, False)
            count = adam_state.count + 1
            n = len(g)
            out = AdamStep.apply(
                AdamConfig(n, *cfg_fields), count, lr, *g, *adam_state.mu, *adam_state.nu
            )
            g = list(out[:n])
            if decoupled_weight_decay and params is not None:
                g = PURE.add(g, PURE.mul(list(params), -lr * decoupled_weight_decay))
            new_adam = ScaleByAdamState(tuple(out[n : 2 * n]), tuple(out[2 * n :]), count)
        new_state = list(state)
        new_state[0] = flip_state
        new_state[1] = new_adam
        return g, tuple(new_state)

    return step


def fused_adam_apply(
    *,
    lr: Any,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
    weight_decay: float,
    maximize: bool,
    decoupled: bool,
) -> FusedApply | None:
    """Apply an ``adam``/``adamw`` chain to owned parameters with torch's fused Adam kernel.

    The kernel reads the gradients without writing them and updates parameters and moments in
    one pass (7 memory streams, as ``torch.optim.Adam(fused=True)``).
    """
    if not isinstance(lr, int | float) or eps_root != 0.0:
        return None
    kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_

    def apply(params: list[Tensor], grads: list[Tensor], state: Any, inplace: bool) -> Any:
        adam_state = state[1]
        if not inplace or not isinstance(adam_state, ScaleByAdamState) or not grads:
            return None
        check_leaf_state("adam", "mu", grads, adam_state)
        if (
            adam_state.mu[0].requires_grad
            or not _uniform(grads)
            or not _uniform(params, allow_grad=True)
        ):
            return None
        count = adam_state.count.add_(1)
        kernel(
            params, grads, list(adam_state.mu), list(adam_state.nu), [], [count] * len(grads),
            lr=float(lr), beta1=b1, beta2=b2, weight_decay=weight_decay, eps=eps,
            amsgrad=False, maximize=maximize,
        )  # fmt: skip
        return params, state

    return apply


def fused_sgd_apply(
    parts: tuple[GradientTransformation, ...],
    *,
    lr: Any,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> FusedApply | None:
    """Apply an ``sgd`` chain to parameters in one pass.

    In place (owned parameters): torch's fused SGD kernel. Out of place without momentum (the
    MAML inner step): the sign/decay transform, then one ``p - lr * g`` op.
    """
    if not isinstance(lr, int | float):
        return None
    flip = parts[0].leafwise()
    neg_lr = -float(lr)
    plain = weight_decay == 0 and not maximize  # the flip is the identity

    def apply(params: list[Tensor], grads: list[Tensor], state: Any, inplace: bool) -> Any:
        if not grads or flip is None:
            return None
        if not inplace:
            if momentum != 0:
                return None
            if plain:  # the MAML inner step: nothing but p - lr * g
                return PURE.add(params, grads, alpha=neg_lr), state
            g, flip_state = flip.update(grads, state[0], params, False)
            return PURE.add(params, g, alpha=neg_lr), (flip_state, *state[1:])
        trace_state = state[1]
        if not _uniform(grads) or not _uniform(params, allow_grad=True):
            return None
        buffers: list[Tensor] = []
        first = False
        if momentum != 0:
            check_leaf_state("sgd", "trace", grads, trace_state)
            if trace_state.trace[0].requires_grad:
                return None
            buffers = list(trace_state.trace)
            first = bool(trace_state.count == 0)  # a host read of a CPU scalar
            trace_state.count.add_(1)
        torch._fused_sgd_(
            params, grads, buffers, weight_decay=weight_decay, momentum=momentum, lr=float(lr),
            dampening=dampening, nesterov=nesterov, maximize=maximize, is_first_step=first,
        )  # fmt: skip
        return params, state

    return apply


def fused_sgd_step(
    parts: tuple[GradientTransformation, ...],
    *,
    lr: Any,
    momentum: float,
    dampening: float,
    nesterov: bool,
) -> FusedStep | None:
    """The in-place step of ``chain(flip, trace, scale(-lr))`` (a float ``lr``) in one pass.

    The trace and the update are written by the C kernel of :mod:`torchopt_lite._native` in one
    pass over ``g, b`` (4 memory streams; the transforms one by one move 9). Where that kernel is
    unavailable (no C compiler, other dtypes or devices), three multi-tensor passes do the
    undamped, non-Nesterov case: with :math:`b_0 = 0`, :math:`b_t = g_t + \\mu b_{t-1}` is written
    into the gradient buffer, copied to the trace and scaled by :math:`-\\alpha` (7 streams).
    Other cases, a tensor or scheduled ``lr`` and the out-of-place mode use the transforms.
    """
    if momentum == 0 or not isinstance(lr, int | float):
        return None
    flip = parts[0].leafwise()
    if flip is None:
        return None
    stock = dampening == 0 and not nesterov

    def step(
        leaves: list[Tensor], state: Any, params: list[Tensor] | None, inplace: bool
    ) -> tuple[list[Tensor], Any] | None:
        trace_state = state[1]
        if not inplace or not leaves:
            return None
        check_leaf_state("sgd", "trace", leaves, trace_state)
        buffers = list(trace_state.trace)
        if buffers[0].requires_grad or not _uniform(leaves) or _transformed(leaves, buffers):
            return None
        kernel = sgd_momentum_kernel(leaves, buffers)  # decided before ``flip`` writes
        if kernel is None and not stock:
            return None
        g, flip_state = flip.update(leaves, state[0], params, True)
        if kernel is not None:
            first = dampening != 0 and bool(trace_state.count == 0)  # a host read of a CPU scalar
            kernel(momentum, dampening, float(lr), nesterov, first)
        else:
            torch._foreach_add_(g, buffers, alpha=momentum)
            torch._foreach_copy_(buffers, g)
            torch._foreach_mul_(g, -float(lr))
        trace_state.count.add_(1)
        return g, (flip_state, trace_state, *state[2:])

    return step
