"""AdaGrad."""

from __future__ import annotations

from typing import Any

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.schedule._count import as_float
from torchopt_lite.transform.scale import scale_by_schedule
from torchopt_lite.transform.scale_by_rss import scale_by_rss
from torchopt_lite.typing import ScalarOrSchedule


def adagrad(
    lr: ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    maximize: bool = False,
) -> ChainedGradientTransformation:
    r"""AdaGrad, as ``torch.optim.Adagrad``.

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad
        u_t = -\frac{\alpha}{1 + (t-1)\eta}\; g_t / (\sqrt{s_t} + \epsilon)

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule).
        lr_decay: :math:`\eta`.
        weight_decay: coupled L2 penalty.
        initial_accumulator_value: :math:`s_0`.
        eps: :math:`\epsilon`.
        maximize: ascend instead of descend.

    Example:
        >>> opt = torchopt_lite.adagrad(lr=1e-2, lr_decay=1e-3)
    """
    check_nonnegative("adagrad", "lr", lr, what="learning rate")
    check_nonnegative("adagrad", "lr_decay", lr_decay, what="lr_decay")
    check_nonnegative("adagrad", "weight_decay", weight_decay, what="weight_decay")

    def decay(count: Any) -> Any:
        return 1.0 / (1.0 + lr_decay * as_float(count))

    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=weight_decay, maximize=maximize),
        scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps),
        scale_by_schedule(decay),
        scale_by_neg_lr(lr),
    )
