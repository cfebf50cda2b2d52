"""Adam's rescaling: bias-corrected first and second moments."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import adam_direction, adam_moments, next_count, zero_moments
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
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
        g: list[Tensor], state: ScaleByAdamState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAdamState]:
        mu, nu = adam_moments(ops, list(state.mu), list(state.nu), g, b1, b2)
        count = next_count(state.count, ops.inplace)
        u = adam_direction(ops, g, mu, nu, count, b1, b2, eps, eps_root)
        return u, ScaleByAdamState(mu=tuple(mu), nu=tuple(nu), count=count)

    kind = None  # tensor hyperparameters: no fused kernel takes them
    if _kinds.constant(b1, b2, eps, eps_root):
        kind = _kinds.ScaleByAdam(float(b1), float(b2), float(eps), float(eps_root))
    check = state_check("scale_by_adam", ScaleByAdamState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, kind=kind, check=check))


def scale_by_accelerated_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    """TorchOpt's name for the fused Adam rescaling; the same math as :func:`scale_by_adam`.

    Note:
        TorchOpt routes this through a C++/CUDA extension. Here the dispatch calls torch's own
        fused Adam kernel for whole ``adam``/``adamw`` steps where it computes correctly, so this
        transform is :func:`scale_by_adam` itself.
    """
    return scale_by_adam(b1, b2, eps, eps_root, moment_requires_grad)
