"""Adafactor's rescaling: second moments factored into row and column statistics."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import (
    check_nonnegative,
    known_value,
    real_leaves_check,
    reject_complex_leaves,
)
from torchopt_lite._dispatch import Facts, Leafwise
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type

_WHY = "row and column factors of a complex leaf's real view would mix its two parts"


@register_state_type
class ScaleByFactoredRmsState(NamedTuple):
    """State of :func:`scale_by_factored_rms`: row and column factors, unfactored ``v``, count.

    A leaf of two or more dimensions keeps ``row`` (its shape with the last axis 1) and ``col``
    (the second-to-last axis 1), and an empty ``v``; a vector or scalar leaf keeps ``v`` (its
    own shape) and empty ``row`` and ``col``.
    """

    row: tuple[Tensor, ...]
    col: tuple[Tensor, ...]
    v: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def _factor_shapes(x: Tensor) -> tuple[list[int], list[int], list[int]]:
    """Shapes of ``row``, ``col`` and ``v`` for a leaf like ``x``."""
    if x.ndim < 2:
        return [0], [0], list(x.shape)
    row, col = list(x.shape), list(x.shape)
    row[-1], col[-2] = 1, 1
    return row, col, [0]


def scale_by_factored_rms(
    beta2_decay: float = -0.8,
    eps: float | None = None,
    d: float = 1.0,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by Adafactor's factored second moments, then clip (see :func:`adafactor`).

    .. math::
        \hat\beta_t = 1 - t^{\tau}, \quad
        R_t = \hat\beta_t R_{t-1} + (1 - \hat\beta_t)\, \mathrm{mean}_{-1}(g_t^2), \quad
        C_t = \hat\beta_t C_{t-1} + (1 - \hat\beta_t)\, \mathrm{mean}_{-2}(g_t^2),

        \hat V_t = R_t C_t / \max(\mathrm{mean}_{-2}(R_t), \epsilon_1)
        \ \text{(a vector leaf: an EMA of } g_t^2), \quad
        U_t = g_t / \sqrt{\max(\hat V_t, \epsilon_1^2)}, \quad
        u_t = U_t / \max(1, \mathrm{RMS}(U_t) / d)

    ``eps`` (:math:`\epsilon_1`) ``None`` is each leaf's ``torch.finfo(dtype).eps``. Complex
    leaves are rejected (``ValueError``).
    """
    decay, ratio = known_value(beta2_decay), known_value(d)  # a tensor: checked if free to read
    if decay is not None and not decay <= 0.0:
        raise ValueError(f"scale_by_factored_rms: beta2_decay must be <= 0; got {beta2_decay}.")
    if eps is not None:
        check_nonnegative("scale_by_factored_rms", "eps", eps, what="epsilon")
    if ratio is not None and not ratio >= 1.0:
        raise ValueError(f"scale_by_factored_rms: d must be >= 1; got {d}.")

    def init(leaves: Any) -> ScaleByFactoredRmsState:
        reject_complex_leaves("scale_by_factored_rms", _WHY, leaves)
        shapes = [_factor_shapes(x) for x in leaves]
        row, col, v = (
            tuple(
                x.new_zeros(s[k], requires_grad=moment_requires_grad)
                for x, s in zip(leaves, shapes, strict=True)
            )
            for k in range(3)
        )
        return ScaleByFactoredRmsState(row, col, v, count=zero_count(leaves))

    def update(
        g: list[Tensor], state: ScaleByFactoredRmsState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByFactoredRmsState]:
        count = next_count(state.count, ops.inplace)
        w = count.to(coefficient_dtype(count.device)) ** beta2_decay  # 1 - beta2_hat_t
        fac = [i for i, x in enumerate(g) if x.ndim >= 2]
        vec = [i for i, x in enumerate(g) if x.ndim < 2]
        row, col, v = list(state.row), list(state.col), list(state.v)
        var: list[Tensor] = [g[0]] * len(g)  # every entry is replaced below
        if fac:
            gf = [g[i] for i in fac]
            row_f = _ema(
                ops, [row[i] for i in fac], [(x * x).mean(-1, keepdim=True) for x in gf], w
            )
            col_f = _ema(
                ops, [col[i] for i in fac], [(x * x).mean(-2, keepdim=True) for x in gf], w
            )
            for i, r, c in zip(fac, row_f, col_f, strict=True):
                row[i], col[i] = r, c
                var[i] = (r @ c) / r.mean(-2, keepdim=True).clamp(min=_eps1(eps, r))
        if vec:
            gv = [g[i] for i in vec]
            v_v = _ema(ops, [v[i] for i in vec], ops.fresh.mul(gv, gv), w)
            for i, x in zip(vec, v_v, strict=True):
                v[i] = x
                var[i] = x
        u = [x * s.clamp(min=_eps1(eps, x) ** 2).rsqrt() for x, s in zip(g, var, strict=True)]
        rms = [n / math.sqrt(max(x.numel(), 1)) for n, x in zip(ops.norms(u, 2), u, strict=True)]
        u = ops.div(u, [(r / d).clamp(min=1.0) for r in rms])
        new = ScaleByFactoredRmsState(tuple(row), tuple(col), tuple(v), count)
        return u, new

    real_only = real_leaves_check("scale_by_factored_rms", _WHY)

    def check(facts: Facts, state: Any) -> None:
        real_only(facts, state)
        expected = [_factor_shapes(x) for x in facts.leaves]
        if not isinstance(state, ScaleByFactoredRmsState) or any(
            type(f) is not tuple
            or len(f) != len(expected)
            or [list(x.shape) for x in f] != [s[k] for s in expected]
            for k, f in enumerate(state[:3])
        ):
            raise ValueError(
                "scale_by_factored_rms: state does not match the updates; pass the state "
                "returned by this optimizer's init() for params shaped like the updates."
            )

    return LeafwiseTransformation(Leafwise(init, update, check=check))


def _eps1(eps: float | None, x: Tensor) -> float:
    return torch.finfo(x.dtype).eps if eps is None else eps


def _ema(ops: Ops, m: list[Tensor], x: list[Tensor], w: Tensor) -> list[Tensor]:
    r""":math:`m \leftarrow (1 - w) m + w x` with a tensor weight :math:`w` (from the count)."""
    return ops.add(ops.mul(m, 1.0 - w), ops.fresh.mul(x, w))
