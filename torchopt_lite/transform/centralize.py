"""Gradient centralization: subtract each leaf's mean over all dimensions but the first."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite._checks import real_leaves_check, reject_complex_leaves
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, LeafwiseTransformation


def centralize() -> LeafwiseTransformation:
    r"""Centralize the updates of every leaf with two or more dimensions.

    .. math::
        u_{k, \ldots} \leftarrow u_{k, \ldots} - \operatorname{mean}_{\ldots}(u_{k, \ldots})

    for each index :math:`k` of the first dimension (one output unit in torch's
    ``(out, in, ...)`` layout). Vectors and scalars pass through unchanged. Complex leaves are
    rejected with a ``ValueError`` (by ``init`` and ``update``) before anything is written.

    Example:
        >>> t = centralize()
        >>> g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        >>> t.update(g, t.init(g))[0]
        tensor([[-1.,  0.,  1.],
                [-1.,  0.,  1.]])

    References:
        Yong et al., `Gradient Centralization: A New Optimization Technique for Deep Neural
        Networks <https://arxiv.org/abs/2004.01461>`_, 2020.

    Note:
        Optax's ``centralize`` (the mean over all dimensions but the first, for ``ndim > 1``).
    """

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        index = [i for i, x in enumerate(g) if x.ndim > 1]
        if not index:
            return g, state
        blocks = [g[i] for i in index]
        means = [x.mean(dim=tuple(range(1, x.ndim)), keepdim=True) for x in blocks]
        out = list(g)
        for i, x in zip(index, ops.add(blocks, means, alpha=-1.0), strict=True):
            out[i] = x
        return out, state

    why = "the mean is over a leaf's own dimensions"

    def init(leaves: Any) -> EmptyState:
        reject_complex_leaves("centralize", why, leaves)
        return EmptyState()

    check = real_leaves_check("centralize", why)
    return LeafwiseTransformation(Leafwise(init, update, check=check))
