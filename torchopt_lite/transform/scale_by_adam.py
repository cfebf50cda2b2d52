"""Adam's rescaling: bias-corrected first and second moments."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._leaves import check_leaf_state
from torchopt_lite.base import Leafwise, LeafwiseTransformation
from torchopt_lite.transform._moments import (
    bias_correction,
    ema,
    ema_sq,
    next_count,
    rsqrt_denominator,
    zero_moments,
)
from torchopt_lite.transform._ops import ops_for


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`.

    Attributes:
        mu: first moments :math:`m_t`, one per parameter leaf (flat tuple).
        nu: second moments :math:`v_t`, one per parameter leaf (flat tuple).
        count: the step count :math:`t` (0-d int64 tensor).
    """

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by Adam's bias-corrected moments; the math is in :func:`torchopt_lite.adam`.

    .. math::
        u_t = \hat m_t / (\sqrt{\hat v_t + \bar\epsilon} + \epsilon)
    """
    check_in_range("scale_by_adam", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_adam", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_adam", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_adam", "eps_root", eps_root, what="epsilon")

    def init(leaves: Any) -> ScaleByAdamState:
        return ScaleByAdamState(*zero_moments(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleByAdamState, params: Any, inplace: bool
    ) -> tuple[list[Tensor], ScaleByAdamState]:
        check_leaf_state("scale_by_adam", "mu", g, state)
        ops = ops_for(inplace)
        mu = ema(ops, list(state.mu), g, b1)
        nu = ema_sq(ops, list(state.nu), g, b2)
        count = next_count(state.count, inplace)
        u = adam_direction(ops, g, mu, nu, count, b1, b2, eps, eps_root)
        return u, ScaleByAdamState(mu=tuple(mu), nu=tuple(nu), count=count)

    return LeafwiseTransformation(Leafwise(init, update))


def adam_direction(
    ops: Any,
    out: list[Tensor],
    mu: list[Tensor],
    nu: list[Tensor],
    count: Tensor,
    b1: float,
    b2: float,
    eps: float,
    eps_root: float,
) -> list[Tensor]:
    r""":math:`\hat m / (\sqrt{\hat v + \bar\epsilon} + \epsilon)`, into ``out`` when in place."""
    denom = rsqrt_denominator(
        ops, nu, eps, scale=1.0 / bias_correction(b2, count), eps_root=eps_root
    )
    u = ops.div(ops.copy(out, mu), denom)
    return ops.mul(u, 1.0 / bias_correction(b1, count))


def scale_by_accelerated_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    """TorchOpt's name for the fused Adam rescaling; the same math as :func:`scale_by_adam`.

    Note:
        TorchOpt routes this through a C++/CUDA extension. Here the fused multi-tensor kernel is
        selected by the ``adam``/``adamw`` aliases for whole-chain in-place steps, so this
        transform is :func:`scale_by_adam` itself.
    """
    return scale_by_adam(b1, b2, eps, eps_root, moment_requires_grad)
