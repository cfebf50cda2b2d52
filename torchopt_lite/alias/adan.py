"""Adan."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import Mask, add_decayed_weights
from torchopt_lite.transform.scale_by_adan import scale_by_adan
from torchopt_lite.typing import ScalarOrSchedule


def adan(
    lr: ScalarOrSchedule = 1e-3,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    mask: Mask | None = None,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Adan: adaptive Nesterov momentum, estimated from successive gradient differences.

    .. math::
        d_t &= g_t - g_{t-1} \quad (d_1 = 0) \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3) (g_t + \beta_2 d_t)^2 \\
        u_t &= -\alpha_t \biggl(\frac{\hat m_t + \beta_2 \hat v_t}
        {\sqrt{\hat n_t + \bar\epsilon} + \epsilon} + \lambda \theta_{t-1}\biggr)

    with :math:`\hat m_t = m_t / (1-\beta_1^t)`, :math:`\hat v_t = v_t / (1-\beta_2^t)`,
    :math:`\hat n_t = n_t / (1-\beta_3^t)`.

    Args:
        lr: step size :math:`\alpha_t` (float, 0-d tensor or schedule).
        b1: :math:`\beta_1 \in [0, 1)`, decay of the gradient average.
        b2: :math:`\beta_2 \in [0, 1)`, decay of the gradient-difference average.
        b3: :math:`\beta_3 \in [0, 1)`, decay of the second moment.
        eps: :math:`\epsilon`, added outside the square root.
        eps_root: :math:`\bar\epsilon`, inside the square root.
        weight_decay: decoupled decay :math:`\lambda`.
        mask: a tree of bools (or a callable ``params -> tree``) selecting the leaves to decay.
        maximize: ascend instead of descend.
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = adan(lr=1e-3)
        >>> p = {"w": torch.ones(2)}
        >>> updates, state = opt.update({"w": torch.ones(2)}, opt.init(p), params=p)
        >>> updates["w"]
        tensor([-0.0010, -0.0010])

    References:
        Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
        Models", IEEE TPAMI 2024 (arXiv:2208.06677).

    Note:
        The betas follow the authors' code and Optax (decays near 1); the paper writes
        :math:`1-\beta`. The paper and the authors' code weight :math:`d_t` by :math:`\beta_2`
        (the paper's :math:`1-\beta_2`); ``optax.adan`` 0.2.8 weights it by :math:`1-\beta_2`
        (google-deepmind/optax#1715), so the two agree on the first step only;
        ``scale_by_adan(diff_weight=1 - b2)`` reproduces Optax. Weight decay is Optax's
        decoupled :math:`-\alpha_t\lambda\theta_{t-1}`, not the paper's proximal
        :math:`\theta / (1 + \alpha_t\lambda)` (they agree to first order in
        :math:`\alpha_t\lambda`). There is no ``torch.optim`` counterpart.
    """
    check_nonnegative("adan", "lr", lr, what="learning rate")
    check_in_range("adan", "b1", b1, 0.0, 1.0)
    check_in_range("adan", "b2", b2, 0.0, 1.0)
    check_in_range("adan", "b3", b3, 0.0, 1.0)
    check_nonnegative("adan", "eps", eps, what="epsilon")
    check_nonnegative("adan", "eps_root", eps_root, what="epsilon")
    check_nonnegative("adan", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_adan(b1, b2, b3, eps, eps_root, moment_requires_grad=moment_requires_grad),
        add_decayed_weights(weight_decay, mask),
        scale_by_neg_lr(lr),
    )
