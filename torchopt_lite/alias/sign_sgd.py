"""signSGD."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_sign import scale_by_sign
from torchopt_lite.typing import ScalarOrSchedule


def sign_sgd(
    lr: ScalarOrSchedule, weight_decay: float = 0.0, *, maximize: bool = False
) -> ChainedGradientTransformation:
    r"""signSGD: steps of the sign of each gradient component.

    .. math::
        u_t = -\alpha_t \operatorname{sign}(g_t + \lambda \theta_{t-1})

    The sign has derivative 0 wherever it is defined, so out-of-place steps pass gradients
    to the parameters only through :math:`\theta_t = \theta_{t-1} + u_t`. A complex leaf is
    treated as its real and imaginary parts.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule ``count -> lr``).
        weight_decay: coupled L2 penalty :math:`\lambda` (added to the gradient before the sign).
        maximize: ascend the objective instead of descending it.

    Example:
        >>> opt = sign_sgd(lr=0.1)
        >>> updates, _ = opt.update(torch.tensor([3.0, -0.2, 0.0]), opt.init(torch.zeros(3)))
        >>> updates
        tensor([-0.1000,  0.1000, -0.0000])

    References:
        Bernstein et al., `signSGD: Compressed Optimisation for Non-Convex Problems
        <https://arxiv.org/abs/1802.04434>`_, 2018.

    Note:
        ``torch.optim`` has no signSGD; ``optax.sign_sgd`` is the same without weight decay.
    """
    check_nonnegative("sign_sgd", "lr", lr, what="learning rate")
    check_nonnegative("sign_sgd", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_sign(),
        scale_by_neg_lr(lr),
    )
