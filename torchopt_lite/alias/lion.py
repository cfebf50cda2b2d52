"""Lion (EvoLved Sign Momentum)."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import add_decayed_weights
from torchopt_lite.transform.scale_by_lion import scale_by_lion
from torchopt_lite.typing import ScalarOrSchedule


def lion(
    lr: ScalarOrSchedule,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 1e-3,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Lion: the sign of an interpolated momentum, with decoupled weight decay.

    .. math::
        c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u_t = -\alpha_t \bigl(\operatorname{sign}(c_t) + \lambda \theta_{t-1}\bigr), \quad
        m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t

    Every coordinate moves by exactly :math:`\alpha_t` (plus the decay), so Lion wants a
    learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger. A complex leaf is
    treated as its real and imaginary parts (the sign of each).

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule ``count -> lr``).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        weight_decay: decoupled weight decay :math:`\lambda` (multiplied by the learning rate).
        maximize: ascend the objective instead of descending it.
        moment_requires_grad: create the momentum with ``requires_grad=True``.

    Example:
        >>> opt = lion(lr=1e-4)
        >>> params = {"w": torch.ones(2)}
        >>> updates, state = opt.update({"w": torch.tensor([0.5, -2.0])}, opt.init(params),
        ...                             params=params)
        >>> updates["w"]
        tensor([-1.0010e-04,  9.9900e-05])

    References:
        Chen et al., `Symbolic Discovery of Optimization Algorithms
        <https://arxiv.org/abs/2302.06675>`_, 2023.

    Note:
        ``torch.optim`` has no Lion. The math and defaults are ``optax.lion``'s (its ``b1``,
        ``b2`` are our ``betas``; the weight decay is multiplied by the learning rate, as in
        Optax and the paper's code); ``lr`` has no default, as in Optax.
    """
    b1, b2 = check_betas("lion", betas)
    check_nonnegative("lion", "lr", lr, what="learning rate")
    check_nonnegative("lion", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_lion(b1, b2, moment_requires_grad=moment_requires_grad),
        add_decayed_weights(weight_decay),
        scale_by_neg_lr(lr),
    )
