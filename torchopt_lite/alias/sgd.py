"""Stochastic gradient descent with momentum."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.trace import trace
from torchopt_lite.typing import ScalarOrSchedule


def sgd(
    lr: ScalarOrSchedule,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    moment_requires_grad: bool = False,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""SGD with optional heavy-ball or Nesterov momentum, as ``torch.optim.SGD``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1} \\
        b_1 &= g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t \\
        u_t &= -\alpha_t \,(g_t + \mu b_t) \text{ (Nesterov)}, \quad \text{else } -\alpha_t b_t

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule); required.
        momentum: :math:`\mu \ge 0` (0 disables the trace).
        dampening: :math:`\tau`.
        weight_decay: coupled L2 penalty :math:`\lambda`.
        nesterov: Nesterov momentum (needs momentum > 0 and no dampening).
        moment_requires_grad: create the momentum buffer with ``requires_grad=True``.
        maximize: ascend instead of descend.

    Example:
        >>> opt = torchopt_lite.sgd(lr=0.1, momentum=0.9)
        >>> p = torch.ones(2)
        >>> u, _ = opt.update(torch.ones(2), opt.init(p))
        >>> u
        tensor([-0.1000, -0.1000])
    """
    check_nonnegative("sgd", "lr", lr, what="learning rate")
    check_nonnegative("sgd", "momentum", momentum, what="momentum")
    check_nonnegative("sgd", "weight_decay", weight_decay, what="weight_decay")
    parts = (
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        trace(momentum, dampening, nesterov, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
    return ChainedGradientTransformation(*parts)
