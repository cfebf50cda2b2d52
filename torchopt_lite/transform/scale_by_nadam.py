"""NAdam's rescaling: Adam with Nesterov momentum and a momentum schedule."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    adam_moments,
    bias_correction,
    coefficient_dtype,
    next_count,
    rsqrt_denominator,
    zero_moments,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByNAdamState(NamedTuple):
    r"""State of :func:`scale_by_nadam`: moments ``mu``, ``nu``, ``mu_product``, count."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    mu_product: Tensor  # prod_{i <= t} mu_i, 0-d float64
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def _momentum(b1: float, momentum_decay: float, t: Tensor) -> Tensor:
    r""":math:`\mu_t = \beta_1 (1 - 0.96^{t\psi} / 2)`; :math:`\beta_1` for :math:`\psi=\infty`."""
    if isinstance(momentum_decay, Tensor):  # injected: 0.96^inf = 0 gives b1 for t >= 1
        decay = torch.where(torch.isinf(momentum_decay), 0.0, torch.pow(0.96, t * momentum_decay))
        return b1 * (1.0 - 0.5 * decay)
    if math.isinf(momentum_decay):
        return torch.zeros_like(t) + b1
    return b1 * (1.0 - 0.5 * torch.pow(0.96, t * momentum_decay))


def scale_by_nadam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    momentum_decay: float = 4e-3,
    *,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates as NAdam does (see :func:`torchopt_lite.nadam`).

    .. math::
        \mu_t = \beta_1 \bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr), \quad
        \Delta_t = \Bigl(\frac{1-\mu_t}{1-\prod_{i\le t}\mu_i}\, g_t
        + \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i}\, m_t\Bigr)
        \Big/ \bigl(\sqrt{v_t / (1-\beta_2^t)} + \epsilon\bigr)
    """
    check_in_range("scale_by_nadam", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_nadam", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_nadam", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_nadam", "momentum_decay", momentum_decay, what="momentum_decay")

    def init(leaves: Any) -> ScaleByNAdamState:
        mu, nu, count = zero_moments(leaves, moment_requires_grad)
        mu_product = torch.ones((), dtype=coefficient_dtype(count.device), device=count.device)
        return ScaleByNAdamState(mu, nu, mu_product, count)

    def update(
        g: list[Tensor], state: ScaleByNAdamState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByNAdamState]:
        mu, nu = adam_moments(ops, list(state.mu), list(state.nu), g, b1, b2)
        count = next_count(state.count, ops.inplace)
        t = count.to(state.mu_product.dtype)
        mu_t, mu_next = _momentum(b1, momentum_decay, t), _momentum(b1, momentum_decay, t + 1)
        mu_product = state.mu_product.mul_(mu_t) if ops.inplace else state.mu_product * mu_t
        denom = rsqrt_denominator(ops, nu, eps, bias_correction=bias_correction(b2, count))
        u = ops.mul(g, (1.0 - mu_t) / (1.0 - mu_product))  # g is no longer needed as is
        u = ops.add(u, mu, alpha=mu_next / (1.0 - mu_product * mu_next))  # no temporary
        u = ops.div(u, denom)
        return u, ScaleByNAdamState(tuple(mu), tuple(nu), mu_product, count)

    check = state_check("scale_by_nadam", ScaleByNAdamState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
