"""AdaDelta."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_adadelta import scale_by_adadelta
from torchopt_lite.typing import ScalarOrSchedule


def adadelta(
    lr: ScalarOrSchedule = 1e-3,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""AdaDelta, as ``torch.optim.Adadelta``.

    .. math::
        m_t = \rho m_{t-1} + (1-\rho) g_t^2, \quad
        \Delta_t = \sqrt{(n_{t-1} + \epsilon)/(m_t + \epsilon)}\; g_t, \quad
        n_t = \rho n_{t-1} + (1-\rho)\Delta_t^2, \quad u_t = -\alpha \Delta_t

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule).
        rho: decay :math:`\rho`.
        eps: :math:`\epsilon`.
        weight_decay: coupled L2 penalty.
        moment_requires_grad: create the accumulators with ``requires_grad=True``.

    Example:
        >>> opt = torchopt_lite.adadelta(lr=1.0)

    Note:
        TorchOpt's default ``lr=1e-3`` (kept here) differs from ``torch.optim.Adadelta``'s 1.0.
    """
    check_nonnegative("adadelta", "lr", lr, what="learning rate")
    check_in_range("adadelta", "rho", rho, 0.0, 1.0, closed_high=True)
    check_nonnegative("adadelta", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=False),
        scale_by_adadelta(rho=rho, eps=eps, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
