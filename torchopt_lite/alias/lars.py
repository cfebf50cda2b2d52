"""LARS: layer-wise trust-ratio scaling of SGD with momentum."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_trust_ratio import scale_by_trust_ratio
from torchopt_lite.transform.trace import trace
from torchopt_lite.typing import ScalarOrSchedule


def lars(
    lr: ScalarOrSchedule = 1e-3,
    weight_decay: float = 0.0,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""LARS: SGD with momentum whose steps are scaled layer by layer by a trust ratio.

    For each leaf (layer) :math:`\theta`:

    .. math::
        r_t = \pm g_t + \lambda \theta_{t-1}, \quad
        \phi_t = \begin{cases} c\,\|\theta_{t-1}\| / (\|r_t\| + \epsilon) &
        \|\theta_{t-1}\| > 0,\ \|r_t\| > 0 \\ 1 & \text{otherwise,} \end{cases}

        b_t = \mu b_{t-1} - \alpha \phi_t r_t \ (b_1 = -\alpha \phi_1 r_1), \qquad
        u_t = \begin{cases} -\alpha \phi_t r_t + \mu b_t & \text{nesterov} \\
        b_t & \text{otherwise.} \end{cases}

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule ``count -> lr``); applied
            before the momentum, as in Optax.
        weight_decay: coupled weight decay :math:`\lambda`, inside the trust ratio.
        trust_coefficient: :math:`c`.
        eps: :math:`\epsilon` added to the update norm.
        momentum: :math:`\mu` (0 disables the momentum).
        nesterov: Nesterov momentum.
        maximize: ascend instead of descend (the gradient's sign is flipped first).
        moment_requires_grad: create the momentum buffer with ``requires_grad=True``.

    Example:
        >>> opt = lars(lr=0.1, weight_decay=1e-4)
        >>> params = {"w": torch.ones(2, 2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2, 2)}, state, params=params)

    References:
        You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
        https://arxiv.org/abs/1708.03888

    Note:
        ``optax.lars``'s math and defaults (there is no ``torch.optim`` LARS); Optax requires
        ``learning_rate`` and has no ``maximize``; its ``weight_decay_mask`` and
        ``trust_ratio_mask`` are not offered (use :func:`~torchopt_lite.transform.masked` in a
        chain). Norms are per leaf; a complex leaf's norm is its complex 2-norm. Needs
        ``params`` in ``update``.
    """
    check_nonnegative("lars", "lr", lr, what="learning rate")
    check_nonnegative("lars", "weight_decay", weight_decay, what="weight_decay")
    check_nonnegative("lars", "momentum", momentum)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
        scale_by_neg_lr(lr),
        trace(momentum, nesterov=nesterov, moment_requires_grad=moment_requires_grad),
    )
