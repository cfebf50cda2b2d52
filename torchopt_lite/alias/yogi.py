"""Yogi."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_yogi import scale_by_yogi
from torchopt_lite.typing import ScalarOrSchedule


def yogi(
    lr: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    *,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Yogi: Adam whose second moment changes additively, so the step size cannot jump up.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2 \\
        u_t &= -\alpha_t\, \frac{m_t / (1-\beta_1^t)}
        {\sqrt{v_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon}

    with :math:`m_0 = v_0 = v_{\mathrm{init}}` (``initial_accumulator_value``).

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        b1: :math:`\beta_1 \in [0, 1)`, decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, rate of the second moment.
        eps: :math:`\epsilon`, added outside the square root.
        eps_root: :math:`\bar\epsilon`, inside the square root.
        initial_accumulator_value: :math:`v_{\mathrm{init}} > 0`, the value both moments start at.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = yogi(lr=1e-2)
        >>> p = {"w": torch.ones(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0100, -0.0100])

    References:
        Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018.

    Note:
        As ``optax.yogi`` (0.2.8), which, like the authors' TensorFlow version, bias-corrects
        both moments (the paper's pseudo-code does not), starting from
        ``initial_accumulator_value``. There is no ``torch.optim`` counterpart.
    """
    check_nonnegative("yogi", "lr", lr, what="learning rate")
    check_in_range("yogi", "b1", b1, 0.0, 1.0)
    check_in_range("yogi", "b2", b2, 0.0, 1.0)
    check_nonnegative("yogi", "eps", eps, what="epsilon")
    check_nonnegative("yogi", "eps_root", eps_root, what="epsilon")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_yogi(
            b1,
            b2,
            eps,
            eps_root,
            initial_accumulator_value,
            moment_requires_grad=moment_requires_grad,
        ),
        scale_by_neg_lr(lr),
    )
