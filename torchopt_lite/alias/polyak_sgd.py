"""SGD with the Polyak step size."""

from __future__ import annotations

from torch import Tensor

from torchopt_lite.alias.utils import scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_polyak import scale_by_polyak
from torchopt_lite.typing import ScalarOrSchedule


def polyak_sgd(
    lr: ScalarOrSchedule = 1.0,
    max_lr: float | Tensor = 1.0,
    f_min: float | Tensor = 0.0,
    eps: float | Tensor = 0.0,
    variant: str = "sps",
) -> ChainedGradientTransformation:
    r"""SGD with the stochastic Polyak step size (SPS).

    .. math::
        \theta_{t+1} = \theta_t - s_t \min\Bigl(\frac{f(\theta_t) - f^\star}
        {\lVert g_t \rVert^2 + \epsilon}, \gamma_{\max}\Bigr) g_t

    where :math:`f(\theta_t)` is the loss whose gradient is :math:`g_t`: pass it to ``update``
    as ``value=loss`` (the ``torch.optim``-style class passes its closure's loss,
    ``MetaOptimizer.step(loss)`` and ``FuncOptimizer`` their ``loss``). ``variant="sps+"`` uses
    :math:`\max(f(\theta_t) - f^\star, 0)` (Garrigos et al. 2023).

    Args:
        lr: the global factor :math:`s_t` (Optax's ``scaling``): a float, a 0-d tensor or a
            schedule.
        max_lr: the largest step size :math:`\gamma_{\max}` (Optax's ``max_learning_rate``).
        f_min: :math:`f^\star`, a lower bound on the objective (0 for models that interpolate).
        eps: :math:`\epsilon`, added to the squared norm.
        variant: ``"sps"`` or ``"sps+"``.

    Example:
        >>> opt = polyak_sgd()
        >>> w = torch.tensor([1.0, 2.0, 3.0])
        >>> state = opt.init(w)
        >>> loss = (w**2).sum()  # 14, gradient 2w: step min(14 / 56, 1) = 0.25
        >>> updates, state = opt.update(2 * w, state, value=loss)
        >>> w + updates
        tensor([0.5000, 1.0000, 1.5000])

    References:
        Loizou, Vaswani, Laradji and Lacoste-Julien, "Stochastic Polyak step-size for SGD: an
        adaptive learning rate for fast convergence", AISTATS 2021; Berrada, Zisserman and
        Kumar, "Training neural networks for and by interpolation", ICML 2020.

    Note:
        With ``lr`` :math:`\neq 1`, ``optax.polyak_sgd`` computes the step from the already
        scaled updates (:math:`\min(\cdot / s^2, \gamma_{\max})\, s`), not from the formula its
        docstring gives; this is the formula. At ``lr=1`` the two agree (tested).
    """
    return ChainedGradientTransformation(
        scale_by_polyak(f_min=f_min, max_lr=max_lr, eps=eps, variant=variant),
        scale_by_neg_lr(lr),
    )
