"""Signum (sign of momentum)."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_sign import scale_by_signum
from torchopt_lite.typing import ScalarOrSchedule


def signum(
    lr: ScalarOrSchedule,
    beta: float = 0.9,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Signum: steps of the sign of an exponential moving average of the gradients.

    .. math::
        m_t = \beta m_{t-1} + (1 - \beta)(g_t + \lambda \theta_{t-1}), \qquad
        u_t = -\alpha_t \operatorname{sign}(m_t)

    The average needs no bias correction: a positive factor does not change a sign. A complex
    leaf is treated as its real and imaginary parts.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule ``count -> lr``).
        beta: decay :math:`\beta` of the moving average, in ``[0, 1)`` (0: signSGD).
        weight_decay: coupled L2 penalty :math:`\lambda`.
        maximize: ascend the objective instead of descending it.
        moment_requires_grad: create the moving average with ``requires_grad=True``.

    Example:
        >>> opt = signum(lr=0.1)
        >>> updates, _ = opt.update(torch.tensor([3.0, -0.2]), opt.init(torch.zeros(2)))
        >>> updates
        tensor([-0.1000,  0.1000])

    References:
        Bernstein et al., `signSGD: Compressed Optimisation for Non-Convex Problems
        <https://arxiv.org/abs/1802.04434>`_, 2018.

    Note:
        ``torch.optim`` has no Signum; ``optax.signum`` is the same without weight decay.
    """
    check_nonnegative("signum", "lr", lr, what="learning rate")
    check_in_range("signum", "beta", beta, 0.0, 1.0)
    check_nonnegative("signum", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_signum(beta, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
