"""RMSProp."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_rms import scale_by_rms, scale_by_stddev
from torchopt_lite.transform.trace import trace
from torchopt_lite.typing import ScalarOrSchedule


def rmsprop(
    lr: ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    *,
    initial_scale: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""RMSProp, optionally centred and with momentum, as ``torch.optim.RMSprop``.

    .. math::
        v_t &= \alpha v_{t-1} + (1-\alpha) g_t^2, \qquad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t \text{ (centred)} \\
        d_t &= g_t / (\sqrt{v_t - \bar g_t^2} + \epsilon) \text{ (centred) or }
        g_t / (\sqrt{v_t} + \epsilon) \\
        b_t &= \mu b_{t-1} + d_t, \qquad u_t = -\alpha_t b_t \text{ (or } -\alpha_t d_t
        \text{ without momentum)}

    Args:
        lr: step size (float, 0-d tensor or schedule).
        alpha: smoothing constant :math:`\alpha`.
        eps: :math:`\epsilon`, outside the square root.
        weight_decay: coupled L2 penalty.
        momentum: :math:`\mu`.
        centered: normalise by the estimated variance instead of the second moment.
        initial_scale: initial value of :math:`v_0`.
        nesterov: Nesterov momentum.
        maximize: ascend instead of descend.

    Example:
        >>> opt = torchopt_lite.rmsprop(lr=1e-2, momentum=0.9, centered=True)
    """
    check_nonnegative("rmsprop", "lr", lr, what="learning rate")
    check_in_range("rmsprop", "alpha", alpha, 0.0, 1.0, closed_high=True)
    check_nonnegative("rmsprop", "eps", eps, what="epsilon")
    check_nonnegative("rmsprop", "weight_decay", weight_decay, what="weight_decay")
    check_nonnegative("rmsprop", "momentum", momentum, what="momentum")
    scaler = scale_by_stddev if centered else scale_by_rms
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scaler(alpha=alpha, eps=eps, initial_scale=initial_scale),
        trace(momentum=momentum, nesterov=nesterov),
        scale_by_neg_lr(lr),
    )
