"""Adam's out-of-place step as one autograd node with a closed-form vector-Jacobian product.

Unrolled (meta-learning) steps differentiate through the optimizer. Recording Adam op by op puts
about ten graph nodes per step on the tape; this Function records one. Its forward is the
formula of :mod:`torchopt_lite._moments` (or torch's fused Adam kernel, checked
against it by the tests); its backward is written with differentiable ops on saved inputs and
outputs, so second-order gradients (MAML) flow through it.

With :math:`a = -\\alpha / (1 - \\beta_1^t)`, :math:`c = 1 / (1 - \\beta_2^t)`,
:math:`s = \\sqrt{c v' + \\bar\\epsilon}`, :math:`D = s + \\epsilon` and :math:`u = a m' / D`:

.. math::
    \\bar m' \\mathrel{+}= a \\bar u / D, \\qquad
    \\bar v' \\mathrel{+}= -\\tfrac{a c}{2}\\, \\bar u m' / (D^2 s)\\ (0 \\text{ at } s=0),
    \\bar g = (1-\\beta_1) \\bar m' + 2 (1-\\beta_2)\\, g \\bar v', \\quad
    \\bar m = \\beta_1 \\bar m', \\quad \\bar v = \\beta_2 \\bar v', \\quad
    \\bar\\alpha = -\\frac{1}{1-\\beta_1^t} \\sum \\bar u\\, m' / D.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._dispatch._kernels import fused_adam_update
from torchopt_lite._moments import (
    adam_coefficients,
    adam_direction,
    adam_moments,
    bias_correction,
    rsqrt_denominator,
)
from torchopt_lite._ops import FOREACH_INPLACE, Ops
from torchopt_lite._ops import FOREACH_PURE as PURE


class AdamConfig(NamedTuple):
    """The non-tensor inputs of :class:`AdamStep` (per-call configuration)."""

    n: int
    b1: float
    b2: float
    eps: float
    eps_root: float


class AdamStep(torch.autograd.Function):
    """``(g, m, v) -> (u, m', v')`` for one Adam step scaled by ``-lr`` (count already + 1)."""

    @staticmethod
    def forward(cfg: AdamConfig, count: Tensor, lr: Any, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = cfg.n
        g, mu, nu = list(tensors[:n]), list(tensors[n : 2 * n]), list(tensors[2 * n :])
        fused = fused_adam_update(g, mu, nu, count, lr, cfg.b1, cfg.b2, cfg.eps, cfg.eps_root)
        if fused is not None:
            return (*fused[0], *fused[1], *fused[2])
        mu_new, nu_new = adam_moments(PURE, mu, nu, g, cfg.b1, cfg.b2)
        u = adam_direction(
            PURE, mu_new, mu_new, nu_new, count, cfg.b1, cfg.b2, cfg.eps, cfg.eps_root, -lr
        )
        return (*u, *mu_new, *nu_new)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        cfg, count, lr, *tensors = inputs
        n = cfg.n
        ctx.cfg, ctx.count = cfg, count
        ctx.lr_is_tensor = isinstance(lr, Tensor)
        ctx.lr = None if ctx.lr_is_tensor else lr
        ctx.save_for_backward(*tensors[:n], *output[n : 3 * n], *([lr] if ctx.lr_is_tensor else []))
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Any, ...]:
        cfg: AdamConfig = ctx.cfg
        n = cfg.n
        saved = ctx.saved_tensors
        g, mu_new, nu_new = list(saved[:n]), list(saved[n : 2 * n]), list(saved[2 * n : 3 * n])
        lr = saved[3 * n] if ctx.lr_is_tensor else ctx.lr
        u_bar, mu_bar, nu_bar = grads[:n], grads[n : 2 * n], grads[2 * n :]
        # One formula. With a graph (double backward) every op is out of place; without one,
        # the ops work in place on buffers allocated here, never on the incoming gradients.
        ops = PURE if torch.is_grad_enabled() else FOREACH_INPLACE
        a, c = adam_coefficients(ctx.count, -lr, cfg.b1, cfg.b2)
        gm: list[Tensor] | None = None
        gv: list[Tensor] | None = None
        lr_bar = None
        if any(x is not None for x in u_bar):
            bc2 = bias_correction(cfg.b2, ctx.count)
            s = rsqrt_denominator(ops, nu_new, 0.0, bias_correction=bc2, eps_root=cfg.eps_root)
            denom = ops.fresh.add_scalar(s, cfg.eps)  # D = s + eps
            t = ops.fresh.div(_present(u_bar, g), denom)  # u_bar / D
            gm = ops.fresh.mul(t, a)
            tm = ops.mul(t, mu_new)
            if ctx.lr_is_tensor and ctx.needs_input_grad[2]:
                total = torch.stack([x.sum() for x in tm]).sum()
                lr_bar = -total / bias_correction(cfg.b1, ctx.count)
            gv = ops.mul(_div_where_positive(ops, ops.div(tm, denom), s), -0.5 * a * c)
        gm = _accumulate(ops, gm, mu_bar, g)
        gv = _accumulate(ops, gv, nu_bar, g)
        g_bar = ops.addcmul(ops.fresh.mul(gm, 1.0 - cfg.b1), g, gv, 2.0 * (1.0 - cfg.b2))
        return None, None, lr_bar, *g_bar, *ops.fresh.mul(gm, cfg.b1), *ops.fresh.mul(gv, cfg.b2)


def _div_where_positive(ops: Ops, xs: list[Tensor], s: list[Tensor]) -> list[Tensor]:
    r"""``x / s``, and 0 where ``s = 0``: the derivative of :math:`\sqrt{v}` at 0 taken as 0.

    There every gradient so far was 0, so :math:`m' = 0` and ``x = 0``; torch's 0/0 would be a
    NaN that spreads through the whole meta-gradient (see ``torchopt_lite._ops._Sqrt``).
    """
    if ops.inplace:  # no graph: overwrite our own buffers, one multi-tensor op
        # A positive s is at least sqrt(the smallest subnormal), above the dtype's tiny, so this
        # changes only the zeros; x / tiny is then 0 / tiny = 0.
        torch._foreach_maximum_(s, [torch.finfo(y.dtype).tiny for y in s])
        return ops.div(xs, s)
    out = []
    for x, y in zip(xs, s, strict=True):
        positive = y > 0
        out.append(torch.where(positive, x / torch.where(positive, y, 1.0), 0.0))
    return out


def _accumulate(
    ops: Ops, total: list[Tensor] | None, extra: tuple[Tensor | None, ...], like: list[Tensor]
) -> list[Tensor]:
    """``total + extra`` (``total`` is ours to overwrite; ``extra``, autograd's, is only read)."""
    if all(x is None for x in extra):
        return total if total is not None else [torch.zeros_like(y) for y in like]
    present = _present(extra, like)
    return present if total is None else ops.add(total, present)


def _present(grads: tuple[Tensor | None, ...], like: list[Tensor]) -> list[Tensor]:
    """Output gradients autograd left as ``None`` (unused outputs) become zeros."""
    return [torch.zeros_like(y) if x is None else x for x, y in zip(grads, like, strict=True)]


def adam_step(
    g: list[Tensor],
    mu: tuple[Tensor, ...],
    nu: tuple[Tensor, ...],
    count: Tensor,
    lr: Any,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """``(u, m', v')`` of one out-of-place Adam step, recorded as one :class:`AdamStep` node."""
    n = len(g)
    out = AdamStep.apply(AdamConfig(n, b1, b2, eps, eps_root), count, lr, *g, *mu, *nu)
    return list(out[:n]), list(out[n : 2 * n]), list(out[2 * n :])
