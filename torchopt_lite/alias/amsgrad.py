"""AMSGrad."""

from __future__ import annotations

from torchopt_lite._checks import check_betas, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_amsgrad import scale_by_amsgrad
from torchopt_lite.typing import ScalarOrSchedule


def amsgrad(
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    eps_root: float = 0.0,
    bias_corrected_max: bool = False,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""AMSGrad: Adam whose second moment never decreases, as ``torch.optim.Adam(amsgrad=True)``.

    .. math::
        g_t &\leftarrow \pm g_t + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
        \tilde v_t = \max(\tilde v_{t-1}, v_t) \\
        u_t &= -\alpha_t\, \frac{m_t / (1-\beta_1^t)}
        {\sqrt{\tilde v_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon}

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon`, added outside the square root.
        weight_decay: coupled L2 penalty :math:`\lambda`.
        eps_root: :math:`\bar\epsilon`, inside the square root.
        bias_corrected_max: take the maximum of the bias-corrected
            :math:`\hat v_t = v_t / (1-\beta_2^t)` instead, as ``optax.amsgrad`` does:
            :math:`\tilde v_t = \max(\tilde v_{t-1}, \hat v_t)`,
            :math:`u_t = -\alpha_t \hat m_t / (\sqrt{\tilde v_t + \bar\epsilon} + \epsilon)`.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = amsgrad(lr=1e-3)
        >>> p = {"w": torch.ones(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0010, -0.0010])

    References:
        Reddi, Kale and Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    Note:
        ``torch.optim.Adam(amsgrad=True)`` keeps the maximum of the raw :math:`v_t` and divides
        it by the current :math:`1-\beta_2^t`; ``optax.amsgrad`` keeps the maximum of the
        bias-corrected :math:`v_t / (1-\beta_2^t)`. Since :math:`1/(1-\beta_2^t)` shrinks with
        :math:`t`, Optax's maximum is the larger once an early :math:`v_s` dominates, and the two
        trajectories differ. The default follows ``torch.optim``; ``bias_corrected_max=True``
        gives Optax's.
    """
    b1, b2 = check_betas("amsgrad", betas)
    check_nonnegative("amsgrad", "lr", lr, what="learning rate")
    check_nonnegative("amsgrad", "eps", eps, what="epsilon")
    check_nonnegative("amsgrad", "weight_decay", weight_decay, what="weight_decay")
    check_nonnegative("amsgrad", "eps_root", eps_root, what="epsilon")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_amsgrad(
            b1,
            b2,
            eps,
            eps_root,
            bias_corrected_max=bias_corrected_max,
            moment_requires_grad=moment_requires_grad,
        ),
        scale_by_neg_lr(lr),
    )
