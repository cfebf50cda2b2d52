"""RAdam."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_radam import scale_by_radam
from torchopt_lite.typing import ScalarOrSchedule


def radam(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""RAdam (rectified Adam), as ``torch.optim.RAdam``.

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \quad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    .. math::
        u_t = -\alpha\, \hat m_t \cdot \begin{cases}
        r_t \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\ 1 & \text{otherwise}
        \end{cases}

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`.
        weight_decay: coupled L2 penalty.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = torchopt_lite.radam(lr=1e-3)

    References:
        Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.

    Note:
        TorchOpt's default ``eps=1e-6`` is kept (``torch.optim.RAdam`` uses 1e-8).
    """
    b1, b2 = check_betas("radam", betas)
    check_nonnegative("radam", "lr", lr, what="learning rate")
    check_nonnegative("radam", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=False),
        scale_by_radam(b1, b2, eps, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
