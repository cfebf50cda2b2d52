"""AdaMax."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_adamax import scale_by_adamax
from torchopt_lite.typing import ScalarOrSchedule


def adamax(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""AdaMax (Adam with the infinity norm), as ``torch.optim.Adamax``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        n_t = \max(\beta_2 n_{t-1}, |g_t| + \epsilon), \quad
        u_t = -\frac{\alpha}{1-\beta_1^t}\, m_t / n_t

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`.
        weight_decay: coupled L2 penalty.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = torchopt_lite.adamax(lr=2e-3)

    Note:
        TorchOpt's defaults (``lr=1e-3``, ``eps=1e-6``) are kept; ``torch.optim.Adamax`` uses
        ``lr=2e-3``, ``eps=1e-8``.
    """
    b1, b2 = check_betas("adamax", betas)
    check_nonnegative("adamax", "lr", lr, what="learning rate")
    check_nonnegative("adamax", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=False),
        scale_by_adamax(b1, b2, eps, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
