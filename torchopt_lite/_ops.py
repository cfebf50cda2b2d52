"""Multi-tensor primitives in four renderings: foreach or per leaf, in place or pure.

Every transform writes its formula once against an ``ops`` namespace that the dispatch
(:mod:`torchopt_lite._dispatch`) picks at the flatten boundary:

- ``FOREACH_INPLACE``: multi-tensor ops that overwrite and return their first argument;
- ``FOREACH_PURE``: their out-of-place twins (new tensors, differentiable);
- ``LEAF_INPLACE`` / ``LEAF_PURE``: one ordinary op per leaf, for leaves wrapped by a
  ``torch.func`` transform (multi-tensor ops have no batching rules) and for a few large leaves.

``ops.fresh`` is the pure twin in the same style: a formula uses it for a temporary that must not
overwrite its input. Scalars may be Python numbers or 0-d tensors (see :func:`scalar`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

Leaves = list[Tensor]
Seq = list[Tensor] | tuple[Tensor, ...]


def is_transformed(x: Any) -> bool:
    """Whether ``x`` is wrapped by a ``torch.func`` transform (vmap, grad, jvp)."""
    return isinstance(x, Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(x)


def plain_autograd(xs: Seq) -> bool:
    """Whether ``xs`` live in plain eager autograd: no ``torch.func`` level, no compile trace."""
    return (
        torch._C._functorch.peek_interpreter_stack() is None
        and not _compiling()
        and not any(is_transformed(x) for x in xs)
    )


def scalar(value: Any, xs: Seq) -> Any:
    """A scalar operand in the form multi-tensor ops compute with correctly.

    - A 0-d tensor that requires grad is repeated into a list: the form whose backward is right
      with several leaves (torch 2.13).
    - A constant 0-d CPU tensor becomes a Python number when it can be read without a trace or a
      transform noticing: the scalar then enters every kernel at the kernel's own compute
      precision, exactly as ``torch.optim``'s Python-float hyperparameters do (a float16 leaf is
      not scaled by a float16-rounded coefficient). Elsewhere it stays a tensor (no host sync).
    - Python numbers pass through.
    """
    if not isinstance(value, Tensor):
        return value
    if value.requires_grad:
        return [value] * len(xs)
    if value.device.type == "cpu" and not is_transformed(value) and not _compiling():
        return value.item()
    return value


def _compiling() -> bool:
    return torch.compiler.is_compiling()


# _ALPHA_UNDER_COMPILE: with torch 2.13's inductor, ``torch.add(g, y, alpha=a)`` on a gradient
# from ``torch.func.grad`` of a matmul ignores ``alpha`` (off by ``(1 - a) y``), while
# ``g + y * a`` compiles right; tests/test_compile.py runs a MAML loop with momentum on it.


class _Sqrt(torch.autograd.Function):
    r"""``sqrt`` whose derivative is 0 where ``sqrt(x) = 0`` (the subgradient at a norm's kink).

    Adaptive optimizers divide by :math:`\sqrt{v}`, where :math:`v` accumulates squared
    gradients. An element whose gradient has been exactly 0 at every step (a dead unit, a
    zero-padded feature) has :math:`v = m = 0`; torch's ``sqrt`` backward then computes
    :math:`0 / (2 \cdot 0)` and one NaN spreads through the whole meta-gradient. As a function of
    the gradients, :math:`\sqrt{v}` is a weighted norm, and 0 is its subgradient at 0 (the value
    ``torch.linalg.vector_norm`` takes there); with it, such elements contribute what they
    should, nothing. The backward uses differentiable ops (second order works) and is finite.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(*xs: Tensor) -> tuple[Tensor, ...]:
        if len(xs) == 1:  # the per-leaf rendering applies it leaf by leaf (batchable)
            return (torch.sqrt(xs[0]),)
        return tuple(torch._foreach_sqrt(list(xs)))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        ctx.save_for_backward(*output)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        out = []
        for g, s in zip(grads, ctx.saved_tensors, strict=True):
            positive = s > 0
            safe = torch.where(positive, s, torch.ones_like(s))  # no 0/0, even in double backward
            out.append(torch.where(positive, g / (2 * safe), torch.zeros_like(g)))
        return tuple(out)


def _sqrt(xs: Seq, per_leaf: bool) -> Leaves:
    """Out-of-place ``sqrt``; with autograd recording, through :class:`_Sqrt`."""
    if not torch.is_grad_enabled() or not xs:
        return [torch.sqrt(x) for x in xs] if per_leaf else list(torch._foreach_sqrt(xs))
    if per_leaf:
        return [_Sqrt.apply(x)[0] for x in xs]
    return list(_Sqrt.apply(*xs))


def _pairs(ys: Any, n: int) -> Any:
    return ys if isinstance(ys, list | tuple) else [ys] * n


def _is_number(c: Any) -> bool:
    return isinstance(c, int | float)


# Coefficients as tensors (hyperparameters injected into the state, learnable betas): the
# multi-tensor kernels and ``torch.add(alpha=)``/``addcmul(value=)`` take numbers only, so a
# coefficient that ``scalar`` cannot turn into a number takes the same formula in plain
# differentiable arithmetic (``x + c * y``), which broadcasts a 0-d tensor over every leaf.


def _bounds(low: Any, high: Any, x: Tensor) -> tuple[Any, Any]:
    """``clamp`` bounds for ``x``: both numbers, or both tensors (torch takes no mix)."""
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        lo = torch.as_tensor(low, dtype=x.dtype, device=x.device)
        return lo, torch.as_tensor(high, dtype=x.dtype, device=x.device)
    return low, high


class _ForeachPure:
    """Out-of-place multi-tensor ops: new tensors, differentiable."""

    inplace = False

    @property
    def fresh(self) -> _ForeachPure:
        return self

    @staticmethod
    def mul(xs: Leaves, s: Any) -> Leaves:
        return list(torch._foreach_mul(xs, scalar(s, xs)))

    @staticmethod
    def div(xs: Leaves, ys: Any) -> Leaves:
        return list(torch._foreach_div(xs, scalar(ys, xs)))

    @staticmethod
    def add(xs: Leaves, ys: Seq, alpha: Any = 1.0) -> Leaves:
        alpha = scalar(alpha, xs)
        if not _is_number(alpha):
            return list(torch._foreach_add(xs, torch._foreach_mul(ys, alpha)))
        return list(torch._foreach_add(xs, ys, alpha=alpha))

    @staticmethod
    def add_scalar(xs: Leaves, s: Any) -> Leaves:
        s = scalar(s, xs)
        if isinstance(s, Tensor):  # no Tensor overload of the out-of-place add
            return [x + s for x in xs]
        return list(torch._foreach_add(xs, s))

    @staticmethod
    def lerp(xs: Leaves, ys: Seq, w: Any) -> Leaves:
        w = scalar(w, xs)
        if not _is_number(w):
            step = torch._foreach_mul(torch._foreach_sub(list(ys), xs), w)
            return list(torch._foreach_add(xs, step))
        return list(torch._foreach_lerp(xs, ys, w))

    @staticmethod
    def addcmul(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        v = scalar(v, xs)
        if not _is_number(v):
            return list(torch._foreach_add(xs, torch._foreach_mul(torch._foreach_mul(a, b), v)))
        return list(torch._foreach_addcmul(xs, a, b, value=v))

    @staticmethod
    def addcdiv(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        v = scalar(v, xs)
        if not _is_number(v):
            return list(torch._foreach_add(xs, torch._foreach_mul(torch._foreach_div(a, b), v)))
        return list(torch._foreach_addcdiv(xs, a, b, value=v))

    @staticmethod
    def sqrt(xs: Leaves) -> Leaves:
        return _sqrt(xs, per_leaf=False)

    @staticmethod
    def abs(xs: Leaves) -> Leaves:
        return list(torch._foreach_abs(xs))

    @staticmethod
    def sign(xs: Leaves) -> Leaves:
        return list(torch._foreach_sign(xs))

    @staticmethod
    def neg(xs: Leaves) -> Leaves:
        return list(torch._foreach_neg(xs))

    @staticmethod
    def maximum(xs: Leaves, ys: Seq) -> Leaves:
        return list(torch._foreach_maximum(xs, ys))

    @staticmethod
    def copy(xs: Leaves, ys: Seq) -> Leaves:
        return list(ys)

    @staticmethod
    def nan_to_num(xs: Leaves, nan: float, posinf: float | None, neginf: float | None) -> Leaves:
        return [x.nan_to_num(nan, posinf, neginf) for x in xs]  # no multi-tensor form

    @staticmethod
    def norms(xs: Leaves, p: float) -> Leaves:
        return list(torch._foreach_norm(xs, p))

    @staticmethod
    def clamp(xs: Leaves, low: Any, high: Any) -> Leaves:
        lo, hi = scalar(low, xs), scalar(high, xs)
        if not isinstance(lo, int | float) or not isinstance(hi, int | float):
            return [torch.clamp(x, *_bounds(low, high, x)) for x in xs]  # tensor bounds
        return list(torch._foreach_clamp_max(torch._foreach_clamp_min(xs, lo), hi))

    @staticmethod
    def select(xs: Leaves, conds: Seq, ys: Seq) -> Leaves:
        """``ys`` where ``conds`` is true, else ``xs`` (no multi-tensor form)."""
        return [torch.where(c, y, x) for x, c, y in zip(xs, conds, ys, strict=True)]


class _ForeachInPlace(_ForeachPure):
    """In-place multi-tensor ops: overwrite and return the first argument."""

    inplace = True

    @property
    def fresh(self) -> _ForeachPure:
        return FOREACH_PURE

    @staticmethod
    def mul(xs: Leaves, s: Any) -> Leaves:
        torch._foreach_mul_(xs, scalar(s, xs))
        return xs

    @staticmethod
    def div(xs: Leaves, ys: Any) -> Leaves:
        torch._foreach_div_(xs, scalar(ys, xs))
        return xs

    @staticmethod
    def add(xs: Leaves, ys: Seq, alpha: Any = 1.0) -> Leaves:
        alpha = scalar(alpha, xs)
        if not _is_number(alpha):
            torch._foreach_add_(xs, torch._foreach_mul(ys, alpha))
            return xs
        torch._foreach_add_(xs, ys, alpha=alpha)
        return xs

    @staticmethod
    def add_scalar(xs: Leaves, s: Any) -> Leaves:
        torch._foreach_add_(xs, scalar(s, xs))
        return xs

    @staticmethod
    def lerp(xs: Leaves, ys: Seq, w: Any) -> Leaves:
        w = scalar(w, xs)
        if not _is_number(w):
            torch._foreach_add_(xs, torch._foreach_mul(torch._foreach_sub(list(ys), xs), w))
            return xs
        torch._foreach_lerp_(xs, ys, w)
        return xs

    @staticmethod
    def addcmul(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        v = scalar(v, xs)
        if not _is_number(v):
            torch._foreach_add_(xs, torch._foreach_mul(torch._foreach_mul(a, b), v))
            return xs
        torch._foreach_addcmul_(xs, a, b, value=v)
        return xs

    @staticmethod
    def addcdiv(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        v = scalar(v, xs)
        if not _is_number(v):
            torch._foreach_add_(xs, torch._foreach_mul(torch._foreach_div(a, b), v))
            return xs
        torch._foreach_addcdiv_(xs, a, b, value=v)
        return xs

    @staticmethod
    def sqrt(xs: Leaves) -> Leaves:
        torch._foreach_sqrt_(xs)
        return xs

    @staticmethod
    def abs(xs: Leaves) -> Leaves:
        torch._foreach_abs_(xs)
        return xs

    @staticmethod
    def sign(xs: Leaves) -> Leaves:
        torch._foreach_sign_(xs)
        return xs

    @staticmethod
    def neg(xs: Leaves) -> Leaves:
        torch._foreach_neg_(xs)
        return xs

    @staticmethod
    def maximum(xs: Leaves, ys: Seq) -> Leaves:
        torch._foreach_maximum_(xs, ys)
        return xs

    @staticmethod
    def copy(xs: Leaves, ys: Seq) -> Leaves:
        torch._foreach_copy_(xs, ys)
        return xs

    @staticmethod
    def nan_to_num(xs: Leaves, nan: float, posinf: float | None, neginf: float | None) -> Leaves:
        return [x.nan_to_num_(nan, posinf, neginf) for x in xs]

    @staticmethod
    def clamp(xs: Leaves, low: Any, high: Any) -> Leaves:
        lo, hi = scalar(low, xs), scalar(high, xs)
        if not isinstance(lo, int | float) or not isinstance(hi, int | float):
            return [x.clamp_(*_bounds(low, high, x)) for x in xs]
        torch._foreach_clamp_min_(xs, lo)
        torch._foreach_clamp_max_(xs, hi)
        return xs

    @staticmethod
    def select(xs: Leaves, conds: Seq, ys: Seq) -> Leaves:
        return [x.copy_(torch.where(c, y, x)) for x, c, y in zip(xs, conds, ys, strict=True)]


class _LeafPure(_ForeachPure):
    """One ordinary (batchable, differentiable) op per leaf."""

    @property
    def fresh(self) -> _LeafPure:
        return self

    @staticmethod
    def mul(xs: Leaves, s: Any) -> Leaves:
        return [x * y for x, y in zip(xs, _pairs(s, len(xs)), strict=True)]

    @staticmethod
    def div(xs: Leaves, ys: Any) -> Leaves:
        return [x / y for x, y in zip(xs, _pairs(ys, len(xs)), strict=True)]

    @staticmethod
    def add(xs: Leaves, ys: Seq, alpha: Any = 1.0) -> Leaves:
        if not _is_number(alpha) or (alpha != 1.0 and _compiling()):  # _ALPHA_UNDER_COMPILE
            return [x + y * a for x, y, a in zip(xs, ys, _pairs(alpha, len(xs)), strict=True)]
        return [torch.add(x, y, alpha=alpha) for x, y in zip(xs, ys, strict=True)]

    @staticmethod
    def add_scalar(xs: Leaves, s: Any) -> Leaves:
        return [x + s for x in xs]

    @staticmethod
    def lerp(xs: Leaves, ys: Seq, w: Any) -> Leaves:
        if not _is_number(w):
            return [x + (y - x) * c for x, y, c in zip(xs, ys, _pairs(w, len(xs)), strict=True)]
        return [torch.lerp(x, y, w) for x, y in zip(xs, ys, strict=True)]

    @staticmethod
    def addcmul(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        if not _is_number(v):
            vs = _pairs(v, len(xs))
            return [x + p * q * c for x, p, q, c in zip(xs, a, b, vs, strict=True)]
        return [torch.addcmul(x, p, q, value=v) for x, p, q in zip(xs, a, b, strict=True)]

    @staticmethod
    def addcdiv(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        if not _is_number(v):
            vs = _pairs(v, len(xs))
            return [x + p / q * c for x, p, q, c in zip(xs, a, b, vs, strict=True)]
        return [torch.addcdiv(x, p, q, value=v) for x, p, q in zip(xs, a, b, strict=True)]

    @staticmethod
    def sqrt(xs: Leaves) -> Leaves:
        return _sqrt(xs, per_leaf=True)

    @staticmethod
    def abs(xs: Leaves) -> Leaves:
        return [torch.abs(x) for x in xs]

    @staticmethod
    def sign(xs: Leaves) -> Leaves:
        return [torch.sign(x) for x in xs]

    @staticmethod
    def neg(xs: Leaves) -> Leaves:
        return [torch.neg(x) for x in xs]

    @staticmethod
    def maximum(xs: Leaves, ys: Seq) -> Leaves:
        return [torch.maximum(x, y) for x, y in zip(xs, ys, strict=True)]

    @staticmethod
    def norms(xs: Leaves, p: float) -> Leaves:
        return [torch.linalg.vector_norm(x, p) for x in xs]

    @staticmethod
    def clamp(xs: Leaves, low: Any, high: Any) -> Leaves:
        return [torch.clamp(x, *_bounds(low, high, x)) for x in xs]


class _LeafInPlace(_LeafPure):
    """One in-place op per leaf (leaves wrapped by a ``torch.func`` transform)."""

    inplace = True

    @property
    def fresh(self) -> _LeafPure:
        return LEAF_PURE

    @staticmethod
    def mul(xs: Leaves, s: Any) -> Leaves:
        return [x.mul_(y) for x, y in zip(xs, _pairs(s, len(xs)), strict=True)]

    @staticmethod
    def div(xs: Leaves, ys: Any) -> Leaves:
        return [x.div_(y) for x, y in zip(xs, _pairs(ys, len(xs)), strict=True)]

    @staticmethod
    def add(xs: Leaves, ys: Seq, alpha: Any = 1.0) -> Leaves:
        if not _is_number(alpha) or (alpha != 1.0 and _compiling()):  # _ALPHA_UNDER_COMPILE
            return [x.add_(y * a) for x, y, a in zip(xs, ys, _pairs(alpha, len(xs)), strict=True)]
        return [x.add_(y, alpha=alpha) for x, y in zip(xs, ys, strict=True)]

    @staticmethod
    def add_scalar(xs: Leaves, s: Any) -> Leaves:
        return [x.add_(s) for x in xs]

    @staticmethod
    def lerp(xs: Leaves, ys: Seq, w: Any) -> Leaves:
        if not _is_number(w):
            return [x.add_((y - x) * c) for x, y, c in zip(xs, ys, _pairs(w, len(xs)), strict=True)]
        return [x.lerp_(y, w) for x, y in zip(xs, ys, strict=True)]

    @staticmethod
    def addcmul(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        if not _is_number(v):
            vs = _pairs(v, len(xs))
            return [x.add_(p * q * c) for x, p, q, c in zip(xs, a, b, vs, strict=True)]
        return [x.addcmul_(p, q, value=v) for x, p, q in zip(xs, a, b, strict=True)]

    @staticmethod
    def addcdiv(xs: Leaves, a: Seq, b: Seq, v: Any) -> Leaves:
        if not _is_number(v):
            vs = _pairs(v, len(xs))
            return [x.add_(p / q * c) for x, p, q, c in zip(xs, a, b, vs, strict=True)]
        return [x.addcdiv_(p, q, value=v) for x, p, q in zip(xs, a, b, strict=True)]

    @staticmethod
    def sqrt(xs: Leaves) -> Leaves:
        return [x.sqrt_() for x in xs]

    @staticmethod
    def abs(xs: Leaves) -> Leaves:
        return [x.abs_() for x in xs]

    @staticmethod
    def sign(xs: Leaves) -> Leaves:
        return [x.sign_() for x in xs]

    @staticmethod
    def neg(xs: Leaves) -> Leaves:
        return [x.neg_() for x in xs]

    @staticmethod
    def maximum(xs: Leaves, ys: Seq) -> Leaves:
        return [x.copy_(torch.maximum(x, y)) for x, y in zip(xs, ys, strict=True)]

    @staticmethod
    def copy(xs: Leaves, ys: Seq) -> Leaves:
        return [x.copy_(y) for x, y in zip(xs, ys, strict=True)]

    nan_to_num = staticmethod(_ForeachInPlace.nan_to_num)  # one call per leaf in both
    select = staticmethod(_ForeachInPlace.select)

    @staticmethod
    def clamp(xs: Leaves, low: Any, high: Any) -> Leaves:
        return [x.clamp_(*_bounds(low, high, x)) for x in xs]


FOREACH_PURE = _ForeachPure()
FOREACH_INPLACE = _ForeachInPlace()
LEAF_PURE = _LeafPure()
LEAF_INPLACE = _LeafInPlace()
PURE = FOREACH_PURE
Ops = _ForeachPure
"""The type every rendering shares (each namespace is a ``_ForeachPure`` or a subclass)."""


def copies(xs: Seq) -> Leaves:
    """Fresh, dense copies of ``xs`` that may be overwritten.

    On CPU, foreach ops loop over the tensors in C++ with no multi-tensor kernel, and one
    ``clone`` per leaf is faster than a multiply by one; elsewhere the batched op saves launches.
    """
    if not xs or xs[0].device.type == "cpu":
        return [x.clone() for x in xs]
    return list(torch._foreach_mul(xs, 1.0))


def ops_for(inplace: bool, *, per_leaf: bool = False) -> Ops:
    """The namespace for a mode: in place or pure, foreach or per leaf."""
    if per_leaf:
        return LEAF_INPLACE if inplace else LEAF_PURE
    return FOREACH_INPLACE if inplace else FOREACH_PURE
