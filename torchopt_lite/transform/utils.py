"""TorchOpt's transform utilities: tree maps that flatten once, the count and moment helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree
from torch import Tensor

from torchopt_lite._moments import ema, ema_sq
from torchopt_lite._ops import ops_for


def tree_map_flat(
    func: Callable[..., Any], flat_arg: Any, *flat_args: Any, none_is_leaf: bool = False
) -> Any:
    """``optree.tree_map`` over trees; ``None`` entries of the first tree map to ``None``."""

    def fn(x: Any, *xs: Any) -> Any:
        return None if x is None else func(x, *xs)

    return optree.tree_map(fn, flat_arg, *flat_args, none_is_leaf=True)


def tree_map_flat_(
    func: Callable[..., Any], flat_arg: Any, *flat_args: Any, none_is_leaf: bool = False
) -> Any:
    """In-place variant of :func:`tree_map_flat`: ``func`` mutates; the first tree is returned."""
    tree_map_flat(func, flat_arg, *flat_args)
    return flat_arg


def inc_count(updates: Any, count: Tensor) -> Tensor:
    """Return ``count + 1`` (the updates are accepted for TorchOpt compatibility)."""
    return count + 1


def update_moment(
    updates: Any, moments: Any, decay: float, *, order: int, inplace: bool = True
) -> Any:
    r"""Exponential moving average of the ``order``-th power of the updates (1 or 2).

    .. math:: m \leftarrow \beta m + (1 - \beta) g^{k}
    """
    if order not in (1, 2):
        raise ValueError(f"update_moment: order must be 1 or 2; got {order}.")
    g_leaves, spec = optree.tree_flatten(updates)
    m_leaves = optree.tree_leaves(moments)
    step = ema if order == 1 else ema_sq
    return optree.tree_unflatten(spec, step(ops_for(inplace), m_leaves, g_leaves, decay))
