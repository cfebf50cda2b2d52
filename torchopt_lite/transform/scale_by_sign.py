"""Sign descent: the sign of the gradient (signSGD) or of its moving average (Signum)."""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._checks import check_in_range
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import ema, zeros_like_leaves
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation, register_state_type


@register_state_type
class ScaleBySignumState(NamedTuple):
    """State of :func:`scale_by_signum`: the moving average ``mu`` (one tensor per leaf)."""

    mu: tuple[Tensor, ...]


def scale_by_sign() -> LeafwiseTransformation:
    r"""Replace updates by their signs: :math:`u \leftarrow \operatorname{sign}(g)` (stateless).

    Example:
        >>> t = scale_by_sign()
        >>> t.update(torch.tensor([-2.0, 0.0, 0.5]), t.init(torch.zeros(3)))[0]
        tensor([-1.,  0.,  1.])
    """

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        return ops.sign(g), state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update))


def scale_by_signum(
    beta: float = 0.9, *, moment_requires_grad: bool = False
) -> LeafwiseTransformation:
    r"""The sign of a moving average of the updates (see :func:`torchopt_lite.signum`).

    .. math::
        m_t = \beta m_{t-1} + (1 - \beta) g_t, \qquad u_t = \operatorname{sign}(m_t)
    """
    check_in_range("scale_by_signum", "beta", beta, 0.0, 1.0)

    def init(leaves: Any) -> ScaleBySignumState:
        return ScaleBySignumState(mu=zeros_like_leaves(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleBySignumState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleBySignumState]:
        mu = ema(ops, list(state.mu), g, beta)
        return ops.sign(ops.copy(g, mu)), ScaleBySignumState(mu=tuple(mu))

    check = state_check("scale_by_signum", ScaleBySignumState, "mu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
