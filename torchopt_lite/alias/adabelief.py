"""AdaBelief."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_belief import scale_by_belief
from torchopt_lite.typing import ScalarOrSchedule


def adabelief(
    lr: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""AdaBelief: Adam with the variance of the gradient around its running mean.

    The step is large where the gradient agrees with its prediction :math:`m_t` (the "belief")
    and small where it does not.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1-\beta_2) (g_t - m_t)^2 + \bar\epsilon \\
        u_t &= -\alpha_t\, \frac{m_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        b1: :math:`\beta_1 \in [0, 1)`, decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, decay of the belief :math:`s_t`.
        eps: :math:`\epsilon`, added outside the square root.
        eps_root: :math:`\bar\epsilon`, added to :math:`s_t` at every step; keep it positive
            when differentiating through the update (it keeps :math:`s_t > 0`).
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = adabelief(lr=1e-3)
        >>> p = {"w": torch.ones(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0011, -0.0011])

    References:
        Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
        Gradients", NeurIPS 2020.

    Note:
        As ``optax.adabelief`` (same defaults; ``lr`` for ``learning_rate``). Optax's
        ``nesterov`` option is not offered. There is no ``torch.optim`` counterpart.
    """
    check_nonnegative("adabelief", "lr", lr, what="learning rate")
    check_in_range("adabelief", "b1", b1, 0.0, 1.0)
    check_in_range("adabelief", "b2", b2, 0.0, 1.0)
    check_nonnegative("adabelief", "eps", eps, what="epsilon")
    check_nonnegative("adabelief", "eps_root", eps_root, what="epsilon")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_belief(b1, b2, eps, eps_root, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
