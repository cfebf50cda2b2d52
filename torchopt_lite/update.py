"""Apply updates to parameters."""

from __future__ import annotations

from typing import Any

import optree
import torch

from torchopt_lite._dispatch import choose_ops
from torchopt_lite._dispatch._boundary import (
    PLAIN_TENSOR_TYPES,
    check_writable,
    flatten,
    plain_leaves,
    types,
)
from torchopt_lite.base import Params, Updates

__all__ = ["apply_updates"]

_PLAIN = frozenset(PLAIN_TENSOR_TYPES)


def apply_updates(params: Params, updates: Updates, *, inplace: bool = True) -> Params:
    r"""Return :math:`\theta + u` leafwise (updates are already negated and scaled).

    Args:
        params: a tree of tensors.
        updates: a tree of the same structure; a ``None`` update leaves its parameter as is.
        inplace: add into ``params`` (under ``no_grad``) if ``True``; return new tensors
            (differentiable) if ``False``.

    Returns:
        The updated tree (the same tensors as ``params`` when ``inplace=True``).

    Raises:
        ValueError: the trees differ, or (in place) a parameter has elements that share memory
            (an ``expand()``-ed tensor); nothing is written.
        TypeError: a leaf paired with an update is not a tensor.

    Example:
        >>> p = {"w": torch.zeros(2)}
        >>> apply_updates(p, {"w": torch.ones(2)}, inplace=False)["w"]
        tensor([1., 1.])
    """
    ps, us = plain_leaves(params), plain_leaves(updates)
    if ps is None or us is None or type(params) is not type(updates) or len(ps) != len(us):
        p_leaves, p_spec = flatten(params)
        u_leaves, u_spec = flatten(updates)
        if p_spec != u_spec:
            raise ValueError(
                "apply_updates: updates must have the same tree structure as params; "
                f"params: {p_spec}, updates: {u_spec}."
            )
        ps, us = _present_pairs(p_leaves, u_leaves)
    else:
        p_leaves, u_leaves, p_spec = ps, us, None  # every update present: no pairing
    if not ps:
        return params
    ops = choose_ops(us, inplace)
    if inplace:
        check_writable(ps, "params", "apply_updates")
        with torch.no_grad():
            ops.add(ps, us)
        return params
    if p_spec is None:
        return type(params)(ops.add(ps, us))
    if len(ps) == len(p_leaves):
        return optree.tree_unflatten(p_spec, ops.add(ps, us))
    new = iter(ops.add(ps, us))
    out = [p if u is None else next(new) for p, u in zip(p_leaves, u_leaves, strict=True)]
    return optree.tree_unflatten(p_spec, out)


def _present_pairs(
    p_leaves: list[Any], u_leaves: list[Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters that have an update, and their updates (checked to be tensors)."""
    if types(u_leaves) <= _PLAIN and types(p_leaves) <= _PLAIN:
        return p_leaves, u_leaves  # every update present
    pairs = [(p, u) for p, u in zip(p_leaves, u_leaves, strict=True) if u is not None]
    for p, u in pairs:
        if not isinstance(p, torch.Tensor) or not isinstance(u, torch.Tensor):
            raise TypeError(
                "apply_updates: leaves must be tensors; "
                f"got {type(p).__name__} and {type(u).__name__}."
            )
    return [p for p, _ in pairs], [u for _, u in pairs]
