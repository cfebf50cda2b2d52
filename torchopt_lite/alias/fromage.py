"""Fromage: steps of relative size in each layer, with a norm-preserving shrink."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import _decay
from torchopt_lite.transform.scale_by_trust_ratio import scale_by_trust_ratio


def fromage(lr: float = 1e-2, min_norm: float = 1e-6) -> ChainedGradientTransformation:
    r"""Fromage: the Frobenius matched gradient descent, layer by layer.

    For each leaf (layer) :math:`\theta`, with :math:`n(x) = \max(\|x\|, n_0)`:

    .. math::
        \theta_t = \frac{1}{\sqrt{1 + \alpha^2}} \left(\theta_{t-1}
        - \alpha \frac{n(\theta_{t-1})}{n(g_t)} g_t\right),
        \qquad u_t = \theta_t - \theta_{t-1}.

    Args:
        lr: step size :math:`\alpha`, a float or a 0-d tensor (the shrink
            :math:`1/\sqrt{1+\alpha^2}` is fixed at construction, so not a schedule).
        min_norm: :math:`n_0`, the floor of both norms.

    Example:
        >>> opt = fromage(lr=1e-2)
        >>> params = {"w": torch.ones(2, 2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2, 2)}, state, params=params)

    References:
        Bernstein, Vahdat, Yue and Liu, "On the distance between two neural networks and the
        stability of learning", NeurIPS 2020. https://arxiv.org/abs/2002.03432

    Note:
        ``optax.fromage``'s math (there is no ``torch.optim`` Fromage); Optax requires
        ``learning_rate`` and also takes a schedule, here ``lr`` is a float or a 0-d
        tensor. Norms are per leaf; a complex leaf's norm is its complex 2-norm. Needs
        ``params`` in ``update``.
    """
    if callable(lr):
        raise TypeError(
            f"fromage: lr must be a float or a 0-d tensor (the shrink 1/sqrt(1 + lr**2) is "
            f"fixed when the optimizer is built); got {type(lr).__name__}."
        )
    check_nonnegative("fromage", "lr", lr, what="learning rate")
    check_nonnegative("fromage", "min_norm", min_norm)
    # a tensor lr (injected or learned) keeps the shrink in the graph, without a host read
    mult = torch.rsqrt(1.0 + lr * lr) if isinstance(lr, Tensor) else 1.0 / math.sqrt(1.0 + lr**2)
    return ChainedGradientTransformation(
        scale_by_trust_ratio(min_norm=min_norm),
        scale_by_neg_lr(lr * mult),
        _decay(mult - 1.0),
    )
