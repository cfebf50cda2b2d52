"""Apply updates to parameters."""

from __future__ import annotations

import optree
import torch

from torchopt_lite.transform._ops import per_leaf
from torchopt_lite.typing import Params, Updates

__all__ = ["apply_updates"]


def apply_updates(params: Params, updates: Updates, *, inplace: bool = True) -> Params:
    r"""Return :math:`\theta + u` leafwise (updates are already negated and scaled).

    Args:
        params: a tree of tensors.
        updates: a tree of the same structure; a ``None`` update leaves its parameter as is.
        inplace: add into ``params`` (one ``torch._foreach_add_`` under ``no_grad``) if
            ``True``; return new tensors (differentiable) if ``False``.

    Returns:
        The updated tree (the same tensors as ``params`` when ``inplace=True``).

    Example:
        >>> p = {"w": torch.zeros(2)}
        >>> apply_updates(p, {"w": torch.ones(2)}, inplace=False)["w"]
        tensor([1., 1.])
    """
    p_leaves, p_spec = optree.tree_flatten(params, none_is_leaf=True)
    u_leaves, u_spec = optree.tree_flatten(updates, none_is_leaf=True)
    if p_spec != u_spec:
        raise ValueError(
            "apply_updates: updates must have the same tree structure as params; "
            f"params: {p_spec}, updates: {u_spec}."
        )
    pairs = [(p, u) for p, u in zip(p_leaves, u_leaves, strict=True) if u is not None]
    for p, u in pairs:
        if not isinstance(p, torch.Tensor) or not isinstance(u, torch.Tensor):
            raise TypeError(
                "apply_updates: leaves must be tensors; "
                f"got {type(p).__name__} and {type(u).__name__}."
            )
    if inplace:
        if pairs:
            with torch.no_grad():
                torch._foreach_add_([p for p, _ in pairs], [u for _, u in pairs])
        return params
    if pairs and len(pairs) == len(p_leaves) and not per_leaf(p_leaves, u_leaves):
        return optree.tree_unflatten(p_spec, list(torch._foreach_add(p_leaves, u_leaves)))
    out = [p if u is None else p + u for p, u in zip(p_leaves, u_leaves, strict=True)]
    return optree.tree_unflatten(p_spec, out)
