"""The layer-wise trust ratio of LARS, LAMB and Fromage."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation


def trust_ratios(
    ops: Ops,
    g: list[Tensor],
    params: list[Tensor],
    min_norm: float = 0.0,
    trust_coefficient: float = 1.0,
    eps: float = 0.0,
) -> list[Tensor]:
    r"""One 0-d ratio per leaf: :math:`c\,\|\theta\| / (\|u\| + \epsilon)`, or 1 where a norm is 0.

    Both norms are floored at ``min_norm`` first. A complex leaf comes as its real view, whose
    2-norm is the complex norm. The zero-norm case never divides by zero (finite gradients).
    """
    p_norm = torch.stack(ops.norms(params, 2)) if params else torch.zeros(0)
    u_norm = torch.stack(ops.norms(g, 2)) if g else torch.zeros(0)
    if isinstance(min_norm, Tensor) or min_norm > 0.0:  # a tensor: clamp, no host read
        p_norm, u_norm = torch.clamp(p_norm, min=min_norm), torch.clamp(u_norm, min=min_norm)
    zero = (p_norm == 0.0) | (u_norm == 0.0)
    safe = torch.where(zero, torch.ones_like(u_norm), u_norm + eps)
    ratio = torch.where(zero, torch.ones_like(p_norm), trust_coefficient * p_norm / safe)
    return [r.to(x.dtype) for r, x in zip(ratio.unbind(), g, strict=True)]


def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> LeafwiseTransformation:
    r"""Scale each leaf's update by its trust ratio (see :func:`lamb`, :func:`lars`).

    .. math::
        u \leftarrow u \cdot \begin{cases}
        1 & \|\theta\| = 0 \text{ or } \|u\| = 0 \\
        c\,\max(\|\theta\|, n_0) / (\max(\|u\|, n_0) + \epsilon) & \text{otherwise}
        \end{cases}

    Norms are per leaf (per layer); a complex leaf's norm is its complex 2-norm. Needs
    ``params``.
    """
    check_nonnegative("scale_by_trust_ratio", "min_norm", min_norm)
    check_nonnegative("scale_by_trust_ratio", "trust_coefficient", trust_coefficient)
    check_nonnegative("scale_by_trust_ratio", "eps", eps, what="epsilon")

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        ratio = trust_ratios(ops, g, params, min_norm, trust_coefficient, eps)
        return ops.mul(g, ratio), state

    return LeafwiseTransformation(
        Leafwise(lambda leaves: EmptyState(), update, needs_params="scale_by_trust_ratio")
    )
