"""Rprop (resilient backpropagation)."""

from __future__ import annotations

from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale import scale
from torchopt_lite.transform.scale_by_rprop import check_rprop, scale_by_rprop


def rprop(
    lr: float | Tensor = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50.0),
    *,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""Rprop: per-element step sizes that grow while the gradient keeps its sign.

    The same step as ``torch.optim.Rprop``:

    .. math::
        s = \operatorname{sign}(g_t\, g_{t-1}), \qquad
        \eta_t = \operatorname{clip}\Bigl(\eta_{t-1} \cdot
        \begin{cases} \eta_+ & s > 0 \\ \eta_- & s < 0 \\ 1 & s = 0 \end{cases},\;
        \Gamma_{\min}, \Gamma_{\max}\Bigr), \qquad
        g_t \leftarrow 0 \text{ where } s < 0, \qquad
        u_t = -\eta_t \operatorname{sign}(g_t)

    with :math:`\eta_0 =` ``lr`` and :math:`g_0 = 0`; the masked :math:`g_t` is the next step's
    :math:`g_{t-1}` (so a step after a sign change never shrinks again). A complex leaf is
    treated as its real and imaginary parts, as ``torch.optim.Rprop`` does.

    Args:
        lr: initial step size :math:`\eta_0` (a float or a 0-d tensor; it sets the state at
            ``init``, so it cannot be a schedule).
        etas: :math:`(\eta_-, \eta_+)` with :math:`0 < \eta_- < 1 < \eta_+`.
        step_sizes: :math:`(\Gamma_{\min}, \Gamma_{\max})` with
            :math:`0 \le \Gamma_{\min} \le \Gamma_{\max}`.
        maximize: ascend the objective instead of descending it.

    Example:
        >>> opt = rprop(lr=0.1)
        >>> state = opt.init(torch.zeros(2))
        >>> u1, state = opt.update(torch.tensor([1.0, -1.0]), state)
        >>> u2, state = opt.update(torch.tensor([2.0, 1.0]), state)  # grows, then sign flip
        >>> u1, u2
        (tensor([-0.1000,  0.1000]), tensor([-0.1200, 0.0000]))

    References:
        Riedmiller and Braun, `A Direct Adaptive Method for Faster Backpropagation Learning:
        The RPROP Algorithm <https://doi.org/10.1109/ICNN.1993.298623>`_, 1993.

    Note:
        Same math, defaults and argument names as ``torch.optim.Rprop``. ``optax.rprop``
        adapts the step sizes the same way (except that it does not clip a step size whose
        gradient product is 0) but returns each step's update one step late.
    """
    if callable(lr):
        raise TypeError(
            "rprop: lr must be a float or a 0-d tensor (the initial step size, set at init); "
            "got a schedule."
        )
    check_nonnegative("rprop", "lr", lr, what="learning rate")
    check_rprop("rprop", etas, step_sizes)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_rprop(lr, etas, step_sizes),
        scale(-1.0),
    )
