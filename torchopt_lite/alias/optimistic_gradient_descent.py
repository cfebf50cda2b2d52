"""Optimistic gradient descent (OGD)."""

from __future__ import annotations

from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_optimistic_gradient import scale_by_optimistic_gradient
from torchopt_lite.typing import ScalarOrSchedule


def optimistic_gradient_descent(
    lr: ScalarOrSchedule,
    alpha: float | Tensor = 1.0,
    beta: float | Tensor = 1.0,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""Optimistic gradient descent: the gradient plus a step along its last change.

    .. math::
        u_t = -\alpha_t \bigl((\alpha + \beta)\, g_t - \beta\, g_{t-1}\bigr), \qquad g_0 := g_1

    (:math:`g_t` includes the coupled weight decay :math:`\lambda \theta_{t-1}`). It
    approximates the extra-gradient method with one gradient per step and converges in the last
    iterate on bilinear min-max games, where gradient descent-ascent cycles or diverges.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule ``count -> lr``).
        alpha: weight :math:`\alpha \ge 0` of the current gradient (float or 0-d tensor).
        beta: weight :math:`\beta \ge 0` of the optimistic correction (float or 0-d tensor).
        weight_decay: coupled L2 penalty :math:`\lambda`.
        maximize: ascend the objective instead of descending it.

    Example:
        >>> opt = optimistic_gradient_descent(lr=0.1)
        >>> state = opt.init(torch.zeros(1))
        >>> u1, state = opt.update(torch.tensor([1.0]), state)  # first step: -lr * alpha * g
        >>> u2, state = opt.update(torch.tensor([3.0]), state)  # -lr * (2 * 3 - 1)
        >>> u1, u2
        (tensor([-0.1000]), tensor([-0.5000]))

    References:
        Mokhtari et al., `A Unified Analysis of Extra-gradient and Optimistic Gradient Methods
        for Saddle Point Problems: Proximal Point Approach <https://arxiv.org/abs/1901.08511>`_,
        2019.

    Note:
        ``torch.optim`` has none. The math and defaults are
        ``optax.optimistic_gradient_descent``'s (whose first step also uses
        :math:`g_0 = g_1`); ``weight_decay`` and ``maximize`` are additions.
    """
    check_nonnegative("optimistic_gradient_descent", "lr", lr, what="learning rate")
    check_nonnegative("optimistic_gradient_descent", "weight_decay", weight_decay)
    check_nonnegative("optimistic_gradient_descent", "alpha", alpha)
    check_nonnegative("optimistic_gradient_descent", "beta", beta)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_neg_lr(lr),
    )
