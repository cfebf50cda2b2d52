"""Prodigy: AdamW whose step size is a running estimate of the distance to the solution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import (
    check_betas,
    check_in_range,
    check_nonnegative,
    check_positive_value,
    coefficient,
)
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    bias_correction,
    coefficient_dtype,
    ema,
    next_count,
    zero_count,
    zeros_like_leaves,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type
from torchopt_lite.typing import ScalarOrSchedule


@register_state_type
class ScaleByProdigyState(NamedTuple):
    r"""State of :func:`scale_by_prodigy`.

    Per leaf: the moments ``mu``, ``nu`` (of :math:`d_k g_k`), the weighted gradient sum
    ``grad_sum`` (:math:`s_k`) and the initial point ``params0``; shared: the estimate
    ``estim_lr`` (:math:`d_k`), the weighted numerator ``numerator`` (:math:`r_k`), as 0-d
    tensors, and the step ``count``.
    """

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    grad_sum: tuple[Tensor, ...]
    params0: tuple[Tensor, ...]
    estim_lr: Tensor
    numerator: Tensor
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def validate(
    caller: str,
    lr: Any,
    betas: Any,
    beta3: float | None,
    eps: float,
    estim_lr0: float,
    estim_lr_coef: float,
    weight_decay: float,
) -> tuple[float, float, float]:
    """Check Prodigy's hyperparameters; returns ``(b1, b2, b3)`` (``b3`` defaults to ``√b2``)."""
    check_nonnegative(caller, "lr", lr, what="learning rate")
    b1, b2 = check_betas(caller, betas)
    b3 = b2**0.5 if beta3 is None else beta3
    check_in_range(caller, "beta3", b3, 0.0, 1.0)
    check_nonnegative(caller, "eps", eps, what="epsilon")
    check_positive_value(caller, "estim_lr0", estim_lr0)
    check_nonnegative(caller, "estim_lr_coef", estim_lr_coef)
    check_nonnegative(caller, "weight_decay", weight_decay, what="weight_decay")
    return b1, b2, coefficient(b3)


def _filled(value: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A fresh 0-d ``dtype`` tensor holding ``value`` (a number, or a tensor kept in the graph)."""
    if isinstance(value, Tensor):
        return value.to(dtype=dtype, device=device).clone()
    return torch.full((), value, dtype=dtype, device=device)


def _vdot(xs: Sequence[Tensor], ys: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    r""":math:`\sum_i \langle x_i, y_i \rangle` over all leaves, as a 0-d ``dtype`` tensor."""
    return torch.stack([torch.sum(x * y).to(dtype) for x, y in zip(xs, ys, strict=True)]).sum()


def scale_by_prodigy(
    lr: ScalarOrSchedule = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
    *,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Prodigy's whole step (learning rate and sign included; see :func:`prodigy`).

    Its output is the update to add to the parameters, as Optax's ``contrib.prodigy``.
    """
    b1, b2, b3 = validate(
        "scale_by_prodigy", lr, betas, beta3, eps, estim_lr0, estim_lr_coef, weight_decay
    )

    def init(leaves: Any) -> ScaleByProdigyState:
        count = zero_count(leaves)
        dtype = coefficient_dtype(count.device)
        return ScaleByProdigyState(
            mu=zeros_like_leaves(leaves, moment_requires_grad),
            nu=zeros_like_leaves(leaves, moment_requires_grad),
            grad_sum=zeros_like_leaves(leaves, moment_requires_grad),
            params0=tuple(x.clone() for x in leaves),
            estim_lr=_filled(estim_lr0, dtype, count.device),
            numerator=torch.zeros((), dtype=dtype, device=count.device),
            count=count,
        )

    def update(
        g: list[Tensor], state: ScaleByProdigyState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByProdigyState]:
        d = state.estim_lr
        sched = lr(state.count) if callable(lr) else lr
        count = next_count(state.count, ops.inplace)
        dlr = d * sched * torch.sqrt(bias_correction(b2, count)) / bias_correction(b1, count)
        # <g, p0 - p>, before g is overwritten
        step = _vdot(g, ops.fresh.add(list(state.params0), params, alpha=-1.0), d.dtype)
        dg = ops.mul(g, d)
        mu = ema(ops, list(state.mu), dg, b1)
        nu = ops.addcmul(ops.mul(list(state.nu), b2), dg, dg, 1.0 - b2)
        weight = d / estim_lr0 if safeguard_warmup else dlr / estim_lr0
        s = ops.add(ops.mul(list(state.grad_sum), b3), ops.fresh.mul(dg, weight))
        numerator = b3 * state.numerator + (d / estim_lr0) * dlr * step
        denominator = torch.stack([n.to(d.dtype) for n in ops.norms(s, 1.0)]).sum()
        positive = denominator > 0  # all gradients 0 so far: keep d (Optax would give NaN)
        estimate = estim_lr_coef * numerator / torch.where(positive, denominator, 1.0)
        d_new = torch.maximum(d, torch.where(positive, estimate, d))
        denom = ops.add_scalar(ops.fresh.sqrt(nu), d_new * eps)
        u = ops.div(ops.copy(dg, mu), denom)
        if not _kinds.is_zero(weight_decay):
            u = ops.add(u, params, alpha=weight_decay)
        u = ops.mul(u, -dlr)
        new = ScaleByProdigyState(
            tuple(mu), tuple(nu), tuple(s), state.params0, d_new, numerator, count
        )
        return u, new

    check = state_check("scale_by_prodigy", ScaleByProdigyState, "mu", "nu", "grad_sum", "params0")
    return LeafwiseTransformation(
        Leafwise(init, update, check=check, needs_params="scale_by_prodigy")
    )
