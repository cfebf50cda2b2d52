"""AdamW: Adam with decoupled weight decay."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import Mask, add_decayed_weights
from torchopt_lite.transform.scale_by_adam import scale_by_adam
from torchopt_lite.typing import ScalarOrSchedule


def adamw(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    *,
    eps_root: float = 0.0,
    mask: Mask | None = None,
    moment_requires_grad: bool = False,
    maximize: bool = False,
    use_accelerated_op: bool = False,
) -> ChainedGradientTransformation:
    r"""AdamW: Adam's step plus decoupled weight decay.

    .. math::
        u_t = -\alpha_t \bigl(\hat m_t / (\sqrt{\hat v_t + \bar\epsilon} + \epsilon)
        + \lambda \theta_{t-1}\bigr)

    with :math:`\hat m_t, \hat v_t` as in :func:`adam` (computed from :math:`\pm g_t`, without
    weight decay).

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`.
        weight_decay: decoupled decay :math:`\lambda`.
        eps_root: :math:`\bar\epsilon` inside the square root.
        mask: a tree of bools (or a callable ``params -> tree``) selecting the leaves to decay.
        moment_requires_grad: create the moments with ``requires_grad=True``.
        maximize: ascend instead of descend.
        use_accelerated_op: accepted for TorchOpt compatibility (see :func:`adam`).

    Example:
        >>> opt = torchopt_lite.adamw(lr=1e-3, weight_decay=1e-2)

    References:
        Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    b1, b2 = check_betas("adamw", betas)
    check_nonnegative("adamw", "lr", lr, what="learning rate")
    check_nonnegative("adamw", "eps", eps, what="epsilon")
    check_nonnegative("adamw", "weight_decay", weight_decay, what="weight_decay")
    del use_accelerated_op
    parts = (
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_adam(b1, b2, eps, eps_root, moment_requires_grad=moment_requires_grad),
        add_decayed_weights(weight_decay, mask),
        scale_by_neg_lr(lr),
    )
    return ChainedGradientTransformation(*parts)
