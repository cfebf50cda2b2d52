"""NovoGrad: layer-wise normalized gradients with momentum."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_novograd import scale_by_novograd
from torchopt_lite.typing import ScalarOrSchedule


def novograd(
    lr: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""NovoGrad: gradients normalized by a per-layer second moment, then momentum.

    For each leaf (layer) :math:`\theta`, with one scalar :math:`\nu` per layer:

    .. math::
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) \|g_t\|^2 \quad (\nu_1 = \|g_1\|^2),

        m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{\nu_t + \bar\epsilon} + \epsilon}
              + \lambda \theta_{t-1}, \qquad u_t = -\alpha\, m_t.

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule ``count -> lr``).
        b1: :math:`\beta_1` in ``[0, 1)``.
        b2: :math:`\beta_2` in ``[0, 1)``.
        eps: :math:`\epsilon`, added outside the square root.
        eps_root: :math:`\bar\epsilon`, added inside the square root.
        weight_decay: :math:`\lambda`, added to the normalized gradient.
        maximize: ascend instead of descend (the gradient's sign is flipped first).
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = novograd(lr=1e-3)
        >>> params = {"w": torch.ones(2, 2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2, 2)}, state, params=params)

    References:
        Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
        Training of Deep Networks", 2019. https://arxiv.org/abs/1905.11286

    Note:
        ``optax.novograd``'s math and defaults (there is no ``torch.optim`` NovoGrad); Optax
        requires ``learning_rate`` and has no ``maximize``. The momentum has no
        :math:`(1-\beta_1)` factor, as in Optax and the paper's algorithm. A complex leaf's
        layer norm is its complex 2-norm; its ``nu`` state is complex with both components
        equal to :math:`\nu`.
    """
    check_nonnegative("novograd", "lr", lr, what="learning rate")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_novograd(
            b1, b2, eps, eps_root, weight_decay, moment_requires_grad=moment_requires_grad
        ),
        scale_by_neg_lr(lr),
    )
