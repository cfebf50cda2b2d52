"""Averaged SGD (ASGD)."""

from __future__ import annotations

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_asgd import scale_by_asgd
from torchopt_lite.typing import ScalarOrSchedule


def asgd(
    lr: ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
    *,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""Averaged SGD, as ``torch.optim.ASGD``: a decaying step, and the average of the iterates.

    .. math::
        \eta_t = \frac{\alpha_{lr}}{(1 + \lambda \alpha_{lr} (t - 1))^{a}}, \qquad
        \theta_t = \theta_{t-1} - \eta_t \bigl(g_t + w \theta_{t-1} + \lambda \theta_{t-1}\bigr),

        \mu_t = \frac{1}{\max(1, t - 1 - t_0)}, \qquad
        \bar\theta_t = \bar\theta_{t-1} + \mu_t (\theta_t - \bar\theta_{t-1})

    for steps :math:`t = 1, 2, \dots`. The average :math:`\bar\theta_t` is kept in the state
    (``ScaleByAsgdState.ax``, as ``torch.optim.ASGD``'s ``state["ax"]``); it is read, not
    applied: evaluate with it when the run is over.

    Args:
        lr: :math:`\alpha_{lr}` (float, 0-d tensor or schedule ``count -> lr``, evaluated at
            the count of earlier steps).
        lambd: decay term :math:`\lambda` (also slows the step-size decay).
        alpha: power :math:`a` of the step-size decay.
        t0: the step after which averaging starts (before it, :math:`\bar\theta_t = \theta_t`).
        weight_decay: coupled L2 penalty :math:`w`.
        maximize: ascend the objective instead of descending it.

    Example:
        >>> opt = asgd(lr=0.1, lambd=0.0)
        >>> params = torch.ones(2)
        >>> updates, state = opt.update(torch.ones(2), opt.init(params), params=params)
        >>> updates, state[1].ax  # the average of the iterates so far: theta_1
        (tensor([-0.1000, -0.1000]), (tensor([0.9000, 0.9000]),))

    References:
        Polyak and Juditsky, `Acceleration of Stochastic Approximation by Averaging
        <https://doi.org/10.1137/0330046>`_, 1992.

    Note:
        Same math, defaults and argument names as ``torch.optim.ASGD``. torch keeps
        :math:`\eta_t, \mu_t` in the default dtype (float32 unless changed), so its float64 runs
        carry float32-rounded step sizes; here they are computed in float64 from the count.
        Optax has no ASGD.
    """
    check_nonnegative("asgd", "lr", lr, what="learning rate")
    check_nonnegative("asgd", "weight_decay", weight_decay, what="weight_decay")
    check_nonnegative("asgd", "lambd", lambd)
    check_nonnegative("asgd", "alpha", alpha)
    check_nonnegative("asgd", "t0", t0)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_asgd(lr, lambd, alpha, t0),
    )
