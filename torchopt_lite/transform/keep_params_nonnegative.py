"""Updates modified so that the parameters stay non-negative."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation


def keep_params_nonnegative() -> LeafwiseTransformation:
    r"""Replace the updates that would make a parameter negative by the step to zero.

    .. math::
        u \leftarrow \begin{cases} -\theta & \theta + u < 0 \\ u & \text{otherwise}
        \end{cases}

    elementwise, so that :math:`\theta + u \ge 0`. Put it last in a chain: it sees the final
    updates. Needs the params (``update(g, state, params=params)``); a parameter that is already
    negative is moved to zero. For complex leaves it applies to the real and imaginary parts
    separately.

    Example:
        >>> t = keep_params_nonnegative()
        >>> p, u = torch.tensor([1.0, 2.0]), torch.tensor([-3.0, -1.0])
        >>> t.update(u, t.init(p), params=p)[0]
        tensor([-1., -1.])

    Note:
        Optax's ``keep_params_nonnegative``.
    """

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        after = ops.fresh.add(list(params), g)
        negative = [x < 0 for x in after]
        return ops.select(g, negative, ops.fresh.neg(list(params))), state

    impl = Leafwise(lambda leaves: EmptyState(), update, needs_params="keep_params_nonnegative")
    return LeafwiseTransformation(impl)
