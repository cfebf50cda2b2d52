"""SM3: memory-efficient adaptive steps from per-axis accumulators."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_sm3 import scale_by_sm3
from torchopt_lite.typing import ScalarOrSchedule


def sm3(
    lr: ScalarOrSchedule = 1e-3,
    momentum: float = 0.9,
    eps: float = 1e-8,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""SM3: adaptive steps whose second moments cost one accumulator per tensor axis.

    For a leaf with axes :math:`i = 1..k` (:math:`k \ge 2`) and one accumulator vector
    :math:`a_i` per axis (a vector or scalar leaf keeps one accumulator per element):

    .. math::
        v_t = g_t^2 + \min_i a_{i,t-1}, \qquad a_{i,t} = \max_{\text{axes} \ne i} v_t,

        m_t = \mu\, m_{t-1} + (1 - \mu)\, g_t / \sqrt{v_t + \epsilon}, \qquad
        u_t = -\alpha\, m_t,

    where :math:`g_t / \sqrt{v_t + \epsilon}` is 0 where :math:`v_t = 0`.

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule ``count -> lr``).
        momentum: :math:`\mu` in ``[0, 1)``.
        eps: :math:`\epsilon`, inside the square root.
        maximize: ascend instead of descend (the gradient's sign is flipped first).
        moment_requires_grad: create the accumulators and momentum with ``requires_grad=True``.

    Example:
        >>> opt = sm3(lr=1e-2)
        >>> params = {"w": torch.ones(2, 3)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2, 3)}, state)

    References:
        Anil, Gupta, Koren and Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019.
        https://arxiv.org/abs/1901.11150

    Note:
        ``optax.sm3``'s math (there is no ``torch.optim`` SM3); Optax requires
        ``learning_rate``, has no ``maximize`` and fixes ``eps``; it fails on 0-d leaves, which
        here keep one accumulator like a vector's element. Complex leaves are rejected with a
        ``ValueError`` in ``init`` and ``update``, before anything is written, as in Optax.
    """
    check_nonnegative("sm3", "lr", lr, what="learning rate")
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_sm3(momentum, 1.0, eps, moment_requires_grad=moment_requires_grad),
        scale_by_neg_lr(lr),
    )
