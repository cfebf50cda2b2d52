"""NovoGrad's rescaling: a per-layer second moment of gradient norms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Facts, Leafwise, state_check
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByNovogradState(NamedTuple):
    r"""State of :func:`scale_by_novograd`: first moment ``mu``, per-layer ``nu``, count.

    ``nu`` holds one 0-d tensor per leaf in the leaf's dtype; for a complex leaf both its real
    components hold :math:`\nu` (as ``torch.optim.Adagrad``'s complex state does).
    """

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def _zero_layer_moments(leaves: Sequence[Tensor], requires_grad: bool) -> tuple[Tensor, ...]:
    return tuple(x.new_zeros((), requires_grad=requires_grad) for x in leaves)


def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Rescale updates by NovoGrad's per-layer moments (see :func:`novograd`).

    .. math::
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) \|g_t\|^2 \ (\nu_1 = \|g_1\|^2), \quad
        m_t = \beta_1 m_{t-1} + g_t / (\sqrt{\nu_t + \bar\epsilon} + \epsilon) + \lambda \theta,
        \quad u_t = m_t
    """
    check_in_range("scale_by_novograd", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_novograd", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_novograd", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_novograd", "eps_root", eps_root, what="epsilon")
    check_nonnegative("scale_by_novograd", "weight_decay", weight_decay, what="weight_decay")

    def init(leaves: Any) -> ScaleByNovogradState:
        return ScaleByNovogradState(
            mu=zeros_like_leaves(leaves, moment_requires_grad),
            nu=_zero_layer_moments(leaves, moment_requires_grad),
            count=zero_count(leaves),
        )

    def update(
        g: list[Tensor], state: ScaleByNovogradState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByNovogradState]:
        norms = ops.norms(g, 2)  # a complex leaf's real view has its complex norm
        sq = ops.mul(norms, norms)
        first = (state.count == 0).to(coefficient_dtype(state.count.device))
        decay = b2 * (1.0 - first)  # nu_1 = ||g_1||^2: no decay at the first step
        nu = ops.add(ops.mul(list(state.nu), decay), ops.mul(sq, 1.0 - decay))
        denom = ops.add_scalar(ops.sqrt(ops.fresh.add_scalar(nu, eps_root)), eps)
        r = ops.div(g, denom)
        if not _kinds.is_zero(weight_decay):
            r = ops.add(r, params, alpha=weight_decay)
        mu = ops.add(ops.mul(list(state.mu), b1), r)
        u = ops.copy(r, mu)
        count = next_count(state.count, ops.inplace)
        return u, ScaleByNovogradState(mu=tuple(mu), nu=tuple(nu), count=count)

    mu_check = state_check("scale_by_novograd", ScaleByNovogradState, "mu")

    def check(facts: Facts, state: Any) -> None:
        mu_check(facts, state)
        nu = state.nu
        if type(nu) is not tuple or len(nu) != len(facts.leaves) or any(x.ndim for x in nu):
            raise ValueError(
                "scale_by_novograd: state.nu must be a tuple of one 0-d tensor per leaf; pass "
                "the state returned by this optimizer's init()."
            )

    reads = "" if _kinds.is_zero(weight_decay) else "scale_by_novograd"
    return LeafwiseTransformation(Leafwise(init, update, check=check, needs_params=reads))
