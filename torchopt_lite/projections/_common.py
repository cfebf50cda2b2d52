"""Helpers shared by the projections: leaf checks and a tree-wide ``torch.where``."""

from __future__ import annotations

from typing import Any

import optree
import torch
from torch import Tensor


def real_leaves(tree: Any, caller: str) -> list[Tensor]:
    """The leaves of ``tree``; ``TypeError`` unless each is a real floating-point tensor."""
    leaves = optree.tree_leaves(tree)
    for x in leaves:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(
                f"{caller}: every leaf must be a real floating-point tensor; got {got} "
                "(an order-based projection has no meaning for complex numbers)."
            )
    return leaves


def where_tree(cond: Tensor, tree_x: Any, tree_y: Any) -> Any:
    """``tree_x`` where the 0-d ``cond`` holds, else ``tree_y`` (no host sync)."""
    return optree.tree_map(lambda x, y: torch.where(cond, x, y), tree_x, tree_y)
