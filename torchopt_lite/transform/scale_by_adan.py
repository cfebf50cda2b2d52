"""Adan's rescaling: Nesterov momentum estimated from gradient differences."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    bias_correction,
    coefficient_dtype,
    ema,
    ema_sq,
    next_count,
    rsqrt_denominator,
    zero_count,
    zeros_like_leaves,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByAdanState(NamedTuple):
    """State of :func:`scale_by_adan`: moments ``m``, ``v``, ``n``, the last gradient, count."""

    m: tuple[Tensor, ...]
    v: tuple[Tensor, ...]
    n: tuple[Tensor, ...]
    prev_grad: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    *,
    diff_weight: float | None = None,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by Adan's moments (see :func:`torchopt_lite.adan`).

    .. math::
        d_t = g_t - g_{t-1}\ (d_1 = 0), \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t, \\
        n_t = \beta_3 n_{t-1} + (1-\beta_3) (g_t + c\, d_t)^2, \quad
        \Delta_t = (\hat m_t + c\, \hat v_t) / (\sqrt{\hat n_t + \bar\epsilon} + \epsilon)

    ``diff_weight`` is :math:`c`; ``None`` means :math:`c = \beta_2`, the paper's
    :math:`1 - \beta_2` in its convention. Optax 0.2.8 computes :math:`c = 1 - \beta_2`
    (google-deepmind/optax#1715); ``diff_weight=1 - b2`` reproduces it.
    """
    check_in_range("scale_by_adan", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_adan", "b2", b2, 0.0, 1.0)
    check_in_range("scale_by_adan", "b3", b3, 0.0, 1.0)
    check_nonnegative("scale_by_adan", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_adan", "eps_root", eps_root, what="epsilon")
    c = b2 if diff_weight is None else float(diff_weight)
    check_nonnegative("scale_by_adan", "diff_weight", c)

    def init(leaves: Any) -> ScaleByAdanState:
        def zeros() -> tuple[Tensor, ...]:
            return zeros_like_leaves(leaves, moment_requires_grad)

        return ScaleByAdanState(zeros(), zeros(), zeros(), zeros(), zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByAdanState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAdanState]:
        started = (state.count > 0).to(coefficient_dtype(state.count.device))  # d_1 = 0
        d = ops.mul(ops.fresh.add(g, list(state.prev_grad), alpha=-1.0), started)
        m = ema(ops, list(state.m), g, b1)
        v = ema(ops, list(state.v), d, b2)
        n = ema_sq(ops, list(state.n), ops.add(ops.mul(d, c), g), b3)  # d becomes g_t + c d_t
        # out of place, keep a copy: the caller may reuse its gradient buffers (``.grad``)
        prev_grad = ops.copy(list(state.prev_grad), g) if ops.inplace else [x.clone() for x in g]
        count = next_count(state.count, ops.inplace)
        bc2 = bias_correction(b2, count)
        u = ops.mul(ops.copy(g, m), 1.0 / bias_correction(b1, count))
        u = ops.add(u, ops.fresh.mul(v, c / bc2))
        denom = rsqrt_denominator(
            ops, n, eps, bias_correction=bias_correction(b3, count), eps_root=eps_root
        )
        u = ops.div(u, denom)
        return u, ScaleByAdanState(tuple(m), tuple(v), tuple(n), tuple(prev_grad), count)

    check = state_check("scale_by_adan", ScaleByAdanState, "m", "v", "n", "prev_grad")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
