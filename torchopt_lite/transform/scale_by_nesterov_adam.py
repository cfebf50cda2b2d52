"""Adam with Nesterov momentum in Optax's form (``optax.scale_by_adam(nesterov=True)``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import (
    adam_moments,
    bias_correction,
    next_count,
    rsqrt_denominator,
    zero_moments,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation
from torchopt_lite.transform.scale_by_adam import ScaleByAdamState


def scale_by_nesterov_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""Adam's rescaling with a Nesterov look-ahead on the first moment (Dozat, 2016).

    .. math::
        \hat m_t = \frac{\beta_1 m_t}{1 - \beta_1^{t+1}} + \frac{(1 - \beta_1) g_t}{1 - \beta_1^t},
        \qquad
        u_t = \hat m_t \big/ \bigl(\sqrt{v_t / (1 - \beta_2^t) + \bar\epsilon} + \epsilon\bigr)

    with Adam's moments :math:`m_t, v_t` (state: :class:`ScaleByAdamState`). This is Optax's
    ``nadam`` rescaling; ``torch.optim.NAdam`` adds a momentum schedule (see ``scale_by_nadam``).
    """
    check_in_range("scale_by_nesterov_adam", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_nesterov_adam", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_nesterov_adam", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_nesterov_adam", "eps_root", eps_root, what="epsilon")

    def init(leaves: Any) -> ScaleByAdamState:
        return ScaleByAdamState(*zero_moments(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: ScaleByAdamState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], ScaleByAdamState]:
        mu, nu = adam_moments(ops, list(state.mu), list(state.nu), g, b1, b2)
        count = next_count(state.count, ops.inplace)
        denom = rsqrt_denominator(
            ops, nu, eps, bias_correction=bias_correction(b2, count), eps_root=eps_root
        )
        u = ops.mul(g, (1.0 - b1) / bias_correction(b1, count))  # g is no longer needed as is
        u = ops.add(u, ops.fresh.mul(mu, b1 / bias_correction(b1, count + 1)))
        u = ops.div(u, denom)
        return u, ScaleByAdamState(mu=tuple(mu), nu=tuple(nu), count=count)

    check = state_check("scale_by_nesterov_adam", ScaleByAdamState, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))
