"""The step of a difference quotient, from the dtype it is taken in and the input's scale.

A one-sided difference errs by about :math:`h |f''| + \\epsilon |f| / h`, a symmetric one by
:math:`h^2 |f'''| + \\epsilon |f| / h`; the steps :math:`\\epsilon^{1/2}` and
:math:`\\epsilon^{1/3}` (times the scale :math:`\\max(1, |x|)`) balance the two, as
:func:`scipy.optimize.approx_fprime` and numdifftools choose them.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

# 2 for one-sided differences, 3 for symmetric ones; 'naive' takes no difference (no entry)
STEP_ORDER = {
    "forward_difference": 2,
    "forward": 2,
    "central_difference": 3,
    "antithetic": 3,
    "spsa": 3,
}
COORDINATE_METHODS = frozenset({"forward_difference", "central_difference"})


def step(method: str, sigma: float | None, theta: Tensor, caller: str) -> float | Tensor:
    r"""The step :math:`h` for ``theta``: ``sigma``, or :math:`\epsilon^{1/k} \max(1, |x|)`.

    Coordinate methods get one step per entry, rounded so that :math:`x + h` is exact;
    sampling methods one step for the largest entry. A given ``sigma`` below
    :math:`\sqrt\epsilon \max(1, \max_j |x_j|)` loses over half the digits of ``theta``'s dtype
    to rounding, and warns.
    """
    eps = torch.finfo(theta.dtype).eps
    scale = theta.detach().abs().clamp(min=1.0)
    top = float(scale.max()) if scale.numel() else 1.0
    if sigma is not None:
        floor = math.sqrt(eps) * top
        if sigma < floor:
            warnings.warn(
                f"{caller}: sigma={sigma:g} is below the resolution of {theta.dtype} at the "
                f"inputs' scale (sqrt(eps) * max(1, |x|) = {floor:.3g}), so rounding errors "
                "dominate the estimated gradient; pass sigma=None (a step chosen from the dtype "
                "and the inputs) or a larger sigma.",
                UserWarning,
                stacklevel=3,
            )
        return sigma
    c = eps ** (1.0 / STEP_ORDER[method])
    if method in COORDINATE_METHODS:
        return (theta + c * scale) - theta
    return c * top
