"""``AdamOp``: TorchOpt's accelerated Adam operator, computed with torch's own ops."""

from __future__ import annotations

import torch
from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative
from torchopt_lite._moments import adam_direction, adam_moments
from torchopt_lite._ops import ops_for


class AdamOp:
    r"""Adam's moments and direction for one tensor, TorchOpt's ``AdamOp`` (compatibility name).

    For the step :math:`t` (``count``, already incremented) and gradient :math:`g`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g^2, \quad
        u = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon}.

    Calling it returns ``(m_t, v_t, u)``. With ``inplace=True`` the three are written into
    ``mu``, ``nu`` and ``updates``; otherwise they are new tensors and differentiable with
    respect to all three inputs. The math is :func:`torchopt_lite.transform.scale_by_adam`'s
    (the same helpers), so there is no extension to build.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`, added outside the square root.
        eps_root: :math:`\bar\epsilon \ge 0`, added inside the square root.
        inplace: overwrite ``mu``, ``nu`` and ``updates``.

    Example:
        >>> op = AdamOp(inplace=False)
        >>> mu, nu, u = op(torch.zeros(2), torch.zeros(2), torch.tensor([1.0, -2.0]), count=1)
        >>> u
        tensor([ 1.0000, -1.0000])

    Note:
        TorchOpt computes the bias corrections in float32; here they are float64, as in
        ``torch.optim.Adam``.
    """

    def __init__(
        self,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        *,
        eps_root: float = 0.0,
        inplace: bool = True,
    ) -> None:
        check_in_range("AdamOp", "b1", b1, 0.0, 1.0)
        check_in_range("AdamOp", "b2", b2, 0.0, 1.0)
        check_nonnegative("AdamOp", "eps", eps)
        check_nonnegative("AdamOp", "eps_root", eps_root)
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.inplace = inplace

    def __call__(
        self, mu: Tensor, nu: Tensor, updates: Tensor | None, count: int | Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Return ``(m_t, v_t, u)`` for step ``count``; ``updates=None`` returns the moments."""
        if updates is None:
            return mu, nu, None
        ops = ops_for(self.inplace, per_leaf=True)
        t = torch.as_tensor(count, device=updates.device)
        [m], [v] = adam_moments(ops, [mu], [nu], [updates], self.b1, self.b2)
        [u] = adam_direction(ops, [updates], [m], [v], t, self.b1, self.b2, self.eps, self.eps_root)
        return m, v, u
