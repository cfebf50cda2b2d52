"""Adam's out-of-place step as one autograd node with a hand-derived vector-Jacobian product.

Unrolled (meta-learning) steps differentiate through the optimizer. Recording Adam op by op puts
about ten graph nodes per step on the tape; this Function records one, computes the forward with
multi-tensor ops and the backward in closed form. The backward is itself written with
differentiable ops on saved inputs and outputs, so second-order gradients (MAML) flow through it.

With :math:`a = -\\alpha / (1 - \\beta_1^t)`, :math:`c = 1 / (1 - \\beta_2^t)`,
:math:`s = \\sqrt{c v' + \\bar\\epsilon}`, :math:`D = s + \\epsilon` and :math:`u = a m' / D`:

.. math::
    \\bar m' \\mathrel{+}= a \\bar u / D, \\qquad
    \\bar v' \\mathrel{+}= -\\tfrac{a c}{2}\\, \\bar u m' / (D^2 s), \\qquad
    \\bar g = (1-\\beta_1) \\bar m' + 2 (1-\\beta_2)\\, g \\bar v', \\quad
    \\bar m = \\beta_1 \\bar m', \\quad \\bar v = \\beta_2 \\bar v', \\quad
    \\bar\\alpha = -\\frac{1}{1-\\beta_1^t} \\sum \\bar u\\, m' / D.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite import _native
from torchopt_lite.transform._moments import bias_correction
from torchopt_lite.transform._ops import PURE, clones


def exact_inverse(lr: float) -> float | None:
    """A float ``wd`` with ``1 - lr * wd == 0`` exactly in double precision, if there is one."""
    wd = 1.0 / lr
    for candidate in (wd, math.nextafter(wd, math.inf), math.nextafter(wd, -math.inf)):
        if 1.0 - lr * candidate == 0.0:
            return candidate
    return None


def _native_step(
    cfg: AdamConfig, count: Tensor, lr: Any, g: list[Tensor], mu: list[Tensor], nu: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]] | None:
    """``(u, m', v')`` in one pass of a C loop (:mod:`torchopt_lite._native`; a float ``lr``)."""
    if isinstance(lr, Tensor):
        return None
    a, c = (float(x) for x in _coefficients(cfg, count, lr))
    return _native.adam_forward(
        g, mu, nu, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, eps_root=cfg.eps_root, a=a, c=c
    )


def _kernel_step(
    cfg: AdamConfig, count: Tensor, lr: Any, g: list[Tensor], mu: list[Tensor], nu: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]] | None:
    """``(u, m', v')`` from one fused-kernel pass (CPU, ``eps_root=0``, a positive ``lr``).

    The kernel updates copies of the moments and writes ``0 - lr * step`` into zeroed update
    buffers passed as its parameters; it only reads ``g``. Zeroing costs one write stream where a
    copy of ``g`` would cost a read and a write.
    """
    if cfg.eps_root != 0.0 or g[0].device.type != "cpu" or g[0].dtype not in _KERNEL_DTYPES:
        return None
    scale = float(lr) if not isinstance(lr, Tensor) else 1.0
    if not scale > 0:
        return None
    u = [torch.zeros_like(x) for x in g]
    mu_new, nu_new = clones(mu), clones(nu)  # the kernel overwrites these
    torch._fused_adam_(
        u, g, mu_new, nu_new, [], [count] * len(u),
        lr=scale, beta1=cfg.b1, beta2=cfg.b2, weight_decay=0.0, eps=cfg.eps,
        amsgrad=False, maximize=False,
    )  # fmt: skip
    if isinstance(lr, Tensor):
        torch._foreach_mul_(u, lr.detach().to(u[0].dtype))
    return u, mu_new, nu_new


_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class AdamConfig(NamedTuple):
    n: int
    b1: float
    b2: float
    eps: float
    eps_root: float


def _coefficients(cfg: AdamConfig, count: Tensor, lr: Any) -> tuple[Any, Tensor]:
    """``a = -lr / bc1`` and ``c = 1 / bc2`` for the step ``count`` (already incremented)."""
    a = -lr / bias_correction(cfg.b1, count)
    return a, 1.0 / bias_correction(cfg.b2, count)


def _denominator(cfg: AdamConfig, nu: list[Tensor], c: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    s = PURE.mul(nu, c)
    s = PURE.sqrt(PURE.add_scalar(s, cfg.eps_root) if cfg.eps_root else s)
    return s, PURE.add_scalar(s, cfg.eps)


class AdamStep(torch.autograd.Function):
    """``(g, m, v) -> (u, m', v')`` for one Adam step scaled by ``-lr``."""

    @staticmethod
    def forward(cfg: AdamConfig, count: Tensor, lr: Any, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = cfg.n
        g, mu, nu = list(tensors[:n]), list(tensors[n : 2 * n]), list(tensors[2 * n :])
        fused = _native_step(cfg, count, lr, g, mu, nu) or _kernel_step(cfg, count, lr, g, mu, nu)
        if fused is not None:
            u, mu_new, nu_new = fused
            return (*u, *mu_new, *nu_new)
        mu_new = list(torch._foreach_lerp(mu, g, 1.0 - cfg.b1))
        nu_new = list(torch._foreach_mul(nu, cfg.b2))
        torch._foreach_addcmul_(nu_new, g, g, value=1.0 - cfg.b2)
        a, c = _coefficients(cfg, count, lr)
        denom = list(torch._foreach_mul(nu_new, c.to(nu_new[0].dtype)))
        if cfg.eps_root:
            torch._foreach_add_(denom, cfg.eps_root)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, cfg.eps)
        u = list(torch._foreach_div(mu_new, denom))
        torch._foreach_mul_(u, a.to(u[0].dtype))
        return (*u, *mu_new, *nu_new)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        cfg, count, lr, *tensors = inputs
        n = cfg.n
        ctx.cfg = cfg
        ctx.count = count
        ctx.lr_is_tensor = isinstance(lr, Tensor)
        ctx.lr = None if ctx.lr_is_tensor else lr
        saved_lr = [lr] if ctx.lr_is_tensor else []
        ctx.save_for_backward(*tensors[:n], *output[n : 3 * n], *saved_lr)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Any, ...]:
        cfg: AdamConfig = ctx.cfg
        n = cfg.n
        saved = ctx.saved_tensors
        g, mu_new, nu_new = list(saved[:n]), list(saved[n : 2 * n]), list(saved[2 * n : 3 * n])
        lr = saved[3 * n] if ctx.lr_is_tensor else ctx.lr
        u_bar, mu_bar, nu_bar = grads[:n], grads[n : 2 * n], grads[2 * n :]
        if not torch.is_grad_enabled() and not ctx.lr_is_tensor:
            return (
                None,
                None,
                None,
                *_backward_no_graph(cfg, ctx.count, lr, g, mu_new, nu_new, grads),
            )
        a, c = _coefficients(cfg, ctx.count, lr)
        gm = _present(mu_bar, g)
        gv = _present(nu_bar, g)
        lr_bar = None
        if any(x is not None for x in u_bar):
            ub = _present(u_bar, g)
            s, denom = _denominator(cfg, nu_new, c)
            t = PURE.div(ub, denom)
            gm = PURE.add(gm, PURE.mul(t, a))
            tm = PURE.mul(t, mu_new)
            gv = PURE.add(gv, PURE.mul(PURE.div(PURE.div(tm, denom), s), -0.5 * a * c))
            if ctx.lr_is_tensor and ctx.needs_input_grad[2]:
                inv_bc1 = 1.0 / bias_correction(cfg.b1, ctx.count)
                lr_bar = -inv_bc1 * torch.stack([x.sum() for x in tm]).sum()
        g_bar = PURE.addcmul(PURE.mul(gm, 1.0 - cfg.b1), g, gv, 2.0 * (1.0 - cfg.b2))
        return (
            None,
            None,
            lr_bar,
            *g_bar,
            *PURE.mul(gm, cfg.b1),
            *PURE.mul(gv, cfg.b2),
        )


def _backward_no_graph(
    cfg: AdamConfig,
    count: Tensor,
    lr: float,
    g: list[Tensor],
    mu_new: list[Tensor],
    nu_new: list[Tensor],
    grads: tuple[Tensor | None, ...],
) -> list[Tensor]:
    """The VJP when no graph is recorded: one pass of the C loop, else multi-tensor ops."""
    n = cfg.n
    a, c = (float(x) for x in _coefficients(cfg, count, lr))
    native = _native.adam_backward(
        grads[:n], grads[n : 2 * n], grads[2 * n :], g, mu_new, nu_new,
        b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, eps_root=cfg.eps_root, a=a, c=c,
    )  # fmt: skip
    if native is not None:
        return [*native[0], *native[1], *native[2]]
    return _backward_in_place(cfg, count, lr, g, mu_new, nu_new, grads)


def _backward_in_place(
    cfg: AdamConfig,
    count: Tensor,
    lr: Any,
    g: list[Tensor],
    mu_new: list[Tensor],
    nu_new: list[Tensor],
    grads: tuple[Tensor | None, ...],
) -> list[Tensor]:
    """The same VJP as :meth:`AdamStep.backward` when no graph is recorded (no ``create_graph``).

    Five fresh buffers per leaf, everything else in place: the formula is the one above.
    """
    n = cfg.n
    u_bar, mu_bar, nu_bar = grads[:n], grads[n : 2 * n], grads[2 * n :]
    a_t, c_t = _coefficients(cfg, count, lr)
    a, c = float(a_t), float(c_t)  # a float lr: plain numbers, no per-leaf casts
    gm: list[Tensor] | None = None
    gv: list[Tensor] | None = None
    if any(x is not None for x in u_bar):
        ub = _present(u_bar, g)
        s = list(torch._foreach_mul(nu_new, c))
        if cfg.eps_root:
            torch._foreach_add_(s, cfg.eps_root)
        torch._foreach_sqrt_(s)
        denom = list(torch._foreach_add(s, cfg.eps))
        t = list(torch._foreach_div(ub, denom))  # u_bar / D
        gm = list(torch._foreach_mul(t, a))
        torch._foreach_mul_(t, mu_new)
        torch._foreach_div_(t, denom)
        torch._foreach_div_(t, s)
        torch._foreach_mul_(t, -0.5 * a * c)
        gv = t
    if any(x is not None for x in mu_bar):
        gm = _accumulate(gm, _present(mu_bar, g))
    if any(x is not None for x in nu_bar):
        gv = _accumulate(gv, _present(nu_bar, g))
    gm = gm if gm is not None else [torch.zeros_like(x) for x in g]
    gv = gv if gv is not None else [torch.zeros_like(x) for x in g]
    g_bar = list(torch._foreach_mul(gm, 1.0 - cfg.b1))
    torch._foreach_addcmul_(g_bar, g, gv, value=2.0 * (1.0 - cfg.b2))
    torch._foreach_mul_(gm, cfg.b1)
    torch._foreach_mul_(gv, cfg.b2)
    return [*g_bar, *gm, *gv]


def _accumulate(total: list[Tensor] | None, extra: list[Tensor]) -> list[Tensor]:
    if total is None:
        return clones(extra)  # never write into extra
    torch._foreach_add_(total, extra)
    return total


def _present(grads: tuple[Tensor | None, ...], like: list[Tensor]) -> list[Tensor]:
    """Output gradients autograd left as ``None`` (unused outputs) become zeros."""
    return [torch.zeros_like(y) if x is None else x for x, y in zip(grads, like, strict=True)]
