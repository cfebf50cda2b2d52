"""Schedule-Free SGD."""

from __future__ import annotations

from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_schedule_free import scale_by_schedule_free, validate
from torchopt_lite.typing import ScalarOrSchedule


def schedule_free_sgd(
    lr: ScalarOrSchedule = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    *,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""Schedule-Free SGD: interpolation and averaging instead of momentum and a decay schedule.

    The parameters the optimizer steps are :math:`y` (gradients are taken there); it keeps the
    base sequence :math:`z` and, implicitly, the average :math:`x`:

    .. math::
        d_t &= \nabla f(y_t) + \lambda y_t, \qquad z_{t+1} = z_t - \gamma_t d_t \\
        c_{t+1} &= \frac{\gamma_{\max,t}^{\,p}}{\sum_{i \le t} \gamma_{\max,i}^{\,p}}, \qquad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1} \\
        y_{t+1} &= \beta_1 x_{t+1} + (1 - \beta_1) z_{t+1}
        = (1 - c_{t+1}) y_t + c_{t+1} z_t + \gamma_t (\beta_1 (1 - c_{t+1}) - 1)\, d_t

    with :math:`\gamma_t` the learning rate (times :math:`\min(1, t / \text{warmup})` during
    the warm-up, :math:`t = 1, 2, \dots`), :math:`\gamma_{\max,t}` its running maximum and
    :math:`p` = ``weight_lr_power``. Evaluate (validate, test, ship) the model at
    :math:`x_t = (y_t - (1 - \beta_1) z_t) / \beta_1`:
    ``schedule_free_eval_params(state, params)``
    (:func:`~torchopt_lite.transform.scale_by_schedule_free.schedule_free_eval_params`).

    Args:
        lr: the constant learning rate :math:`\gamma` (float, 0-d tensor or schedule
            ``count -> lr``; no decay is needed).
        warmup_steps: length of a linear warm-up from :math:`\gamma/\text{warmup}`; ``None``:
            none.
        b1: the interpolation :math:`\beta_1`, in ``(0, 1]``.
        weight_decay: :math:`\lambda`, applied at :math:`y`.
        weight_lr_power: :math:`p`, the power of the learning rate in the averaging weights.
        maximize: ascend instead of descend.

    Returns:
        A :class:`~torchopt_lite.base.ChainedGradientTransformation`; ``update`` needs
        ``params``.

    Example:
        >>> opt = schedule_free_sgd(lr=0.1)
        >>> params = {"w": torch.tensor([1.0, -1.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.tensor([1.0, -1.0])}, state, params=params)
        >>> params = torchopt_lite.apply_updates(params, updates)
        >>> params["w"]
        tensor([ 0.9000, -0.9000])

    References:
        Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, "The Road Less Scheduled",
        NeurIPS 2024, arXiv:2405.15682.

    Note:
        Optax's ``contrib.schedule_free_sgd`` computes the same steps for a constant learning
        rate. With ``warmup_steps`` (or a schedule), Optax's SGD takes its first step at the
        schedule's value for count 0 (0 for its warm-up) while its averaging weights use count
        1; here, as in the authors' code, both use :math:`\gamma_t` of step :math:`t`
        (:math:`\gamma/\text{warmup}` first). :math:`y_{t+1}` is formed from :math:`y_t` and
        :math:`z_t` directly, without dividing by :math:`\beta_1`.
    """
    validate("schedule_free_sgd", lr, warmup_steps, b1, weight_decay, weight_lr_power)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_schedule_free(lr, warmup_steps, b1, weight_decay, weight_lr_power),
    )
