"""Optimistic Adam."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale import scale
from torchopt_lite.transform.scale_by_adam import scale_by_adam
from torchopt_lite.transform.scale_by_nesterov_adam import scale_by_nesterov_adam
from torchopt_lite.transform.scale_by_optimistic_gradient import scale_by_optimistic_gradient


def optimistic_adam(
    lr: float | Tensor,
    optimism: float | Tensor | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    *,
    nesterov: bool = True,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Optimistic Adam: optimistic gradient descent on Adam's rescaled gradients.

    .. math::
        r_t = \hat m_t / (\sqrt{\hat v_t + \bar\epsilon} + \epsilon), \qquad
        u_t = -\alpha\, r_t - o\, (r_t - r_{t-1}), \qquad r_0 := r_1

    with Adam's bias-corrected moments of :math:`g_t + \lambda \theta_{t-1}`; with ``nesterov``
    (the default) :math:`\hat m_t = \beta_1 m_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t /
    (1 - \beta_1^t)` (Optax's ``nadam``), otherwise :math:`\hat m_t = m_t / (1 - \beta_1^t)`.

    Args:
        lr: step size :math:`\alpha` (a float or a 0-d tensor; not a schedule: it also weighs
            the optimistic term).
        optimism: :math:`o \ge 0`; ``None`` uses ``lr``, as in the paper.
        b1: decay :math:`\beta_1` of the first moment, in ``[0, 1)``.
        b2: decay :math:`\beta_2` of the second moment, in ``[0, 1)``.
        eps: :math:`\epsilon`, added outside the square root.
        eps_root: :math:`\bar\epsilon`, added inside the square root (nonzero for meta-gradients
            through steps where a gradient component is 0).
        weight_decay: coupled L2 penalty :math:`\lambda`.
        nesterov: use the Nesterov form of the first moment.
        maximize: ascend the objective instead of descending it.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = optimistic_adam(lr=1e-2, optimism=1.0)
        >>> updates, state = opt.update(torch.tensor([2.0]), opt.init(torch.zeros(1)))
        >>> updates  # -lr (1 + b1 / (1 + b1)) sign(g): Adam's first step with the look-ahead
        tensor([-0.0147])

    References:
        Daskalakis et al., `Training GANs with Optimism <https://arxiv.org/abs/1711.00141>`_,
        2018.

    Note:
        ``torch.optim`` has none. The math and defaults are ``optax.optimistic_adam``'s
        (``optimistic_adam_v2(1.0, alpha=lr, beta=optimism)``); ``weight_decay`` and
        ``maximize`` are additions.
    """
    if callable(lr):
        raise TypeError(
            "optimistic_adam: lr must be a float or a 0-d tensor, not a schedule (it also "
            "weighs the optimistic term); for a schedule, chain scale_by_nesterov_adam, "
            "scale_by_optimistic_gradient and a scheduled scale."
        )
    check_nonnegative("optimistic_adam", "lr", lr, what="learning rate")
    o: Any = lr if optimism is None else optimism
    check_nonnegative("optimistic_adam", "optimism", o)
    check_in_range("optimistic_adam", "b1", b1, 0.0, 1.0)
    check_in_range("optimistic_adam", "b2", b2, 0.0, 1.0)
    check_nonnegative("optimistic_adam", "eps", eps, what="epsilon")
    check_nonnegative("optimistic_adam", "eps_root", eps_root, what="epsilon")
    check_nonnegative("optimistic_adam", "weight_decay", weight_decay, what="weight_decay")
    if nesterov:
        rescale = scale_by_nesterov_adam(
            b1, b2, eps, eps_root, moment_requires_grad=moment_requires_grad
        )
    else:
        rescale = scale_by_adam(b1, b2, eps, eps_root, moment_requires_grad=moment_requires_grad)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        rescale,
        scale_by_optimistic_gradient(alpha=lr, beta=o),
        scale(-1.0),
    )
