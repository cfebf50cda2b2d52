"""Schedule-Free AdamW."""

from __future__ import annotations

from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.scale_by_schedule_free import scale_by_schedule_free, validate
from torchopt_lite.typing import ScalarOrSchedule


def schedule_free_adamw(
    lr: ScalarOrSchedule = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Schedule-Free AdamW: Schedule-Free steps along AdamW's momentum-free direction.

    As :func:`~torchopt_lite.alias.schedule_free_sgd.schedule_free_sgd` (the same :math:`y`,
    :math:`z`, :math:`x` and weights :math:`c_t`), with the direction

    .. math::
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad
        d_t = \frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon} + \lambda y_t

    where :math:`g_t = \nabla f(y_t)`. Evaluate the model at
    ``schedule_free_eval_params(state, params)``
    (:func:`~torchopt_lite.transform.scale_by_schedule_free.schedule_free_eval_params`).

    Args:
        lr: the constant learning rate :math:`\gamma` (float, 0-d tensor or schedule).
        warmup_steps: length of a linear warm-up; ``None``: none.
        b1: the interpolation :math:`\beta_1`, in ``(0, 1]`` (it replaces Adam's momentum).
        b2: :math:`\beta_2`, in ``[0, 1)``.
        eps: :math:`\epsilon`, added outside the square root.
        weight_decay: :math:`\lambda`, applied at :math:`y`.
        weight_lr_power: the power of the learning rate in the averaging weights.
        maximize: ascend instead of descend.
        moment_requires_grad: create :math:`v` with ``requires_grad=True``.

    Returns:
        A :class:`~torchopt_lite.base.ChainedGradientTransformation`; ``update`` needs
        ``params``.

    Example:
        >>> opt = schedule_free_adamw(lr=0.1)
        >>> params = {"w": torch.tensor([1.0, -1.0])}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.tensor([1.0, -1.0])}, state, params=params)
        >>> torchopt_lite.apply_updates(params, updates)["w"]
        tensor([ 0.9000, -0.9000])

    References:
        Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, "The Road Less Scheduled",
        NeurIPS 2024, arXiv:2405.15682.

    Note:
        Optax's ``contrib.schedule_free_adamw`` computes the same steps for a constant
        learning rate (see :func:`schedule_free_sgd` for warm-up and schedules, where we follow
        the authors' code). The authors' ``AdamWScheduleFree`` has the same direction and
        averaging; its ``r`` (polynomial weighting in :math:`t`) is not offered.
    """
    validate("schedule_free_adamw", lr, warmup_steps, b1, weight_decay, weight_lr_power, b2, eps)
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_schedule_free(
            lr,
            warmup_steps,
            b1,
            weight_decay,
            weight_lr_power,
            b2=b2,
            eps=eps,
            moment_requires_grad=moment_requires_grad,
        ),
    )
