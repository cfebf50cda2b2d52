"""Rprop's rescaling: per-element step sizes adapted to sign changes of the gradient."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import coefficient, known_value
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import full_like_leaves, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type

INVALID_ETAS = (
    "{caller}: Invalid eta values: etas must satisfy 0 < etas[0] < 1 < etas[1]; got {etas}."
)
INVALID_STEP_SIZES = (
    "{caller}: Invalid step_sizes: they must satisfy 0 <= step_sizes[0] <= step_sizes[1]; "
    "got {step_sizes}."
)


@register_state_type
class ScaleByRpropState(NamedTuple):
    """State of :func:`scale_by_rprop`: the previous (masked) gradient and the step sizes."""

    prev: tuple[Tensor, ...]
    step_size: tuple[Tensor, ...]


def check_rprop(
    caller: str, etas: tuple[float, float], step_sizes: tuple[float, float]
) -> tuple[float, float, float, float]:
    """Validate ``etas`` and ``step_sizes``; return ``(eta_minus, eta_plus, min, max)``."""
    if not isinstance(etas, tuple | list) or len(etas) != 2:
        raise TypeError(f"{caller}: etas must be a pair (etaminus, etaplus); got {etas!r}.")
    if not isinstance(step_sizes, tuple | list) or len(step_sizes) != 2:
        raise TypeError(f"{caller}: step_sizes must be a pair (min, max); got {step_sizes!r}.")
    eta_minus, eta_plus = coefficient(etas[0]), coefficient(etas[1])
    values = (*etas, *step_sizes)
    if any(isinstance(x, bool) or not isinstance(x, int | float | Tensor) for x in values):
        raise TypeError(
            f"{caller}: etas and step_sizes must hold floats; got {etas!r}, {step_sizes!r}."
        )
    e0, e1, s0, s1 = (known_value(x) for x in values)  # None: a tensor taken as given
    if e0 is not None and e1 is not None and not 0.0 < e0 < 1.0 < e1:
        raise ValueError(INVALID_ETAS.format(caller=caller, etas=tuple(etas)))
    low, high = coefficient(step_sizes[0]), coefficient(step_sizes[1])
    if s0 is not None and s1 is not None and not 0.0 <= s0 <= s1:
        raise ValueError(INVALID_STEP_SIZES.format(caller=caller, step_sizes=tuple(step_sizes)))
    return eta_minus, eta_plus, low, high


def _factors(s: list[Tensor], eta_minus: float, eta_plus: float) -> tuple[list[Tensor], ...]:
    """Step-size factors and gradient masks from ``s = sign(g_t g_{t-1})``.

    The factor is ``eta_plus`` where the sign held, ``eta_minus`` where it flipped and 1
    elsewhere; the mask is 0 where the sign flipped and 1 elsewhere.
    """
    factor = [
        torch.where(x > 0, eta_plus, torch.where(x < 0, eta_minus, torch.ones_like(x))) for x in s
    ]
    keep = [torch.logical_not(x < 0).to(x.dtype) for x in s]
    return factor, keep


def scale_by_rprop(
    lr: float | Tensor = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50.0),
) -> LeafwiseTransformation:
    r"""Rprop's step (see :func:`~torchopt_lite.alias.rprop.rprop`); returns :math:`+\Delta_t`.

    .. math::
        s = \operatorname{sign}(g_t\, g_{t-1}), \quad
        \eta_t = \operatorname{clip}(\eta_{t-1} \cdot \{\eta_+, \eta_-, 1\}_s,\,
        \Gamma_{\min}, \Gamma_{\max}), \quad
        g_t \leftarrow 0 \text{ where } s < 0, \quad
        \Delta_t = \operatorname{sign}(g_t)\, \eta_t

    The masked :math:`g_t` is kept as :math:`g_{t-1}` for the next step; :math:`\eta_0 =` ``lr``.
    """
    eta_minus, eta_plus, low, high = check_rprop("scale_by_rprop", etas, step_sizes)

    def init(leaves: Any) -> ScaleByRpropState:
        if isinstance(lr, Tensor):  # a learnable initial step size: keep the graph
            step = tuple(x * lr for x in full_like_leaves(leaves, 1.0))
        else:
            step = full_like_leaves(leaves, lr)
        return ScaleByRpropState(prev=zeros_like_leaves(leaves), step_size=step)

    def update(
        g: list[Tensor], state: ScaleByRpropState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByRpropState]:
        s = ops.sign(ops.fresh.mul(g, list(state.prev)))  # a fresh temporary
        factor, keep = _factors(s, eta_minus, eta_plus)
        step = ops.clamp(ops.mul(list(state.step_size), factor), low, high)
        g = ops.mul(g, keep)
        prev = ops.copy(list(state.prev), g)
        u = ops.mul(ops.sign(g), step)
        return u, ScaleByRpropState(prev=tuple(prev), step_size=tuple(step))

    check = state_check("scale_by_rprop", ScaleByRpropState, "prev", "step_size")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
