"""AdaMaxW: AdaMax with decoupled weight decay."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import Mask, add_decayed_weights
from torchopt_lite.transform.scale_by_adamax import scale_by_adamax
from torchopt_lite.typing import ScalarOrSchedule


def adamaxw(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    *,
    mask: Mask | None = None,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""AdaMaxW: AdaMax's step plus decoupled weight decay, as ``optax.adamaxw``.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        n_t = \max(\beta_2 n_{t-1}, |g_t| + \epsilon), \quad
        u_t = -\alpha_t \Bigl(\frac{m_t}{(1-\beta_1^t)\, n_t} + \lambda \theta_{t-1}\Bigr)

    with :math:`g_t` the (sign-flipped, when maximizing) gradient, without weight decay.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`.
        weight_decay: decoupled decay :math:`\lambda`.
        mask: a tree of bools (or a callable ``params -> tree``) selecting the leaves to decay.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = adamaxw(lr=1e-3, weight_decay=1e-2)
        >>> p = {"w": torch.zeros(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0010, -0.0010])

    References:
        Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (AdaMax);
        Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Note:
        ``torch.optim.Adamax`` has no decoupled decay. Defaults are Optax's (``eps=1e-8``,
        ``weight_decay=1e-4``); ``betas`` stands for Optax's ``b1, b2`` as in
        :func:`~torchopt_lite.alias.adamax.adamax`.
    """
    b1, b2 = check_betas("adamaxw", betas)
    check_nonnegative("adamaxw", "lr", lr, what="learning rate")
    check_nonnegative("adamaxw", "eps", eps, what="epsilon")
    check_nonnegative("adamaxw", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_adamax(b1, b2, eps, moment_requires_grad=moment_requires_grad),
        add_decayed_weights(weight_decay, mask),
        scale_by_neg_lr(lr),
    )
