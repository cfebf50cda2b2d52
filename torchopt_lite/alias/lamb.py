"""LAMB: Adam directions scaled layer by layer by a trust ratio."""

from __future__ import annotations

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import add_decayed_weights
from torchopt_lite.transform.scale_by_adam import scale_by_adam
from torchopt_lite.transform.scale_by_trust_ratio import scale_by_trust_ratio
from torchopt_lite.typing import ScalarOrSchedule


def lamb(
    lr: ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""LAMB: layer-wise adaptive moments (Adam with decoupled decay, scaled by a trust ratio).

    For each leaf (layer) :math:`\theta`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        r_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon}
              + \lambda \theta_{t-1},

        u_t = -\alpha\, \phi_t\, r_t, \qquad
        \phi_t = \begin{cases} \|\theta_{t-1}\| / \|r_t\| & \|\theta_{t-1}\| > 0,\ \|r_t\| > 0 \\
        1 & \text{otherwise.} \end{cases}

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule ``count -> lr``).
        b1: :math:`\beta_1` in ``[0, 1)``.
        b2: :math:`\beta_2` in ``[0, 1)``.
        eps: :math:`\epsilon`, added outside the square root.
        eps_root: :math:`\bar\epsilon`, added inside the square root.
        weight_decay: decoupled weight decay :math:`\lambda`, inside the trust ratio.
        maximize: ascend instead of descend (the gradient's sign is flipped first).
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = lamb(lr=1e-3, weight_decay=0.01)
        >>> params = {"w": torch.ones(2, 2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2, 2)}, state, params=params)

    References:
        You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
        ICLR 2020. https://arxiv.org/abs/1904.00962

    Note:
        ``optax.lamb``'s math and defaults (there is no ``torch.optim`` LAMB); Optax requires
        ``learning_rate`` and has no ``maximize``; its ``mask`` for the decay is not offered
        (use :func:`~torchopt_lite.transform.masked` in a chain). Norms are per leaf; a complex
        leaf's norm is its complex 2-norm. Needs ``params`` in ``update``.
    """
    check_in_range("lamb", "b1", b1, 0.0, 1.0)
    check_in_range("lamb", "b2", b2, 0.0, 1.0)
    check_nonnegative("lamb", "lr", lr, what="learning rate")
    check_nonnegative("lamb", "weight_decay", weight_decay, what="weight_decay")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_adam(b1, b2, eps, eps_root, moment_requires_grad=moment_requires_grad),
        add_decayed_weights(weight_decay),
        scale_by_trust_ratio(),
        scale_by_neg_lr(lr),
    )
